"""The training loop: source pre-training (cached), then Algorithm 1, with evaluation.

I/O lives here (data, checkpoints, progress); the math is in the modules it calls.
The oracle is anything that answers ``ask(index, ys, xs, group, scores) -> classes``: the
in-process ground truth (``GroundTruthOracle``) or the labeling service (``trainer/worker/``).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from server.schemas import budget_total
from trainer.config import TrainConfig, check_model_selection
from trainer.data.folder import SplitTensors, load_folder, to_float
from trainer.learning.labelbank import LabelBank
from trainer.learning.losses import source_loss
from trainer.learning.metrics import ConfusionMatrix
from trainer.loop.checkpoint import (
    cached_weights,
    data_classes,
    init_weights,
    payload,
    pretrain_key,
    save,
)
from trainer.loop.progress import Progress, adapt_update, progress_mode
from trainer.loop.schedule import QueryLog, new_loop_state, target_order
from trainer.loop.step import Ask, Batch, LoopState, Spent, adaptation_step
from trainer.nets.forward import upsample
from trainer.nets.model import build_model, param_groups, poly_lr, set_lr
from trainer.strategies import for_budget

log = logging.getLogger("adamcu.trainer")


@dataclass
class Data:
    """The four splits in memory (uint8 images, labels with 255 = ignore) and class names."""

    source: SplitTensors
    target: SplitTensors
    val: SplitTensors
    test: SplitTensors
    class_names: list[str]
    class_colors: list[tuple[int, int, int]] = field(default_factory=list)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def target_pixels(self) -> int:
        n, _, h, w = self.target.images.shape
        return n * h * w


def budget_pixels(cfg: TrainConfig, data: Data) -> int:
    """The budget M_e in pixels of a run on ``data``, by the service's one rounding rule
    (``server.schemas.budget_total``: the floor of the decimal rate times the pixels)."""
    return budget_total(cfg.budget_rate, data.target_pixels)


def load_data(cfg: TrainConfig, *, target_labels: bool = True) -> Data:
    """Read the plain-folder benchmark (or a user's data in the same format), or, when
    ``cfg.dataset`` / ``cfg.source_dataset`` / ``cfg.source_root`` name real datasets, the
    paper's benchmarks (GTA5 / SYNTHIA / Synscapes -> Cityscapes, see ``trainer.data.paper``).
    ``target_labels=False``: target-train may come without labels (people label it)."""
    if cfg.dataset != "folder" or cfg.source_dataset not in ("", "folder") or cfg.source_root:
        from trainer.data.paper import load_real_splits

        return Data(*load_real_splits(cfg))
    root = Path(cfg.data_root)
    if not (root / "classes.json").is_file():
        raise FileNotFoundError(
            f"no dataset at {root}: run `adamcu generate --out {root}` or point data_root at a "
            "folder with classes.json and <split>/images, <split>/labels (docs/data.md)"
        )
    splits = [cfg.source_split, cfg.target_split, cfg.val_split, cfg.test_split]
    translated = {cfg.source_split: Path(cfg.translated_dir)} if cfg.translated_dir else None
    unlabeled = () if target_labels else (cfg.target_split,)
    loaded, classes = load_folder(
        root, splits, crop=cfg.crop, translated=translated, unlabeled=unlabeled
    )
    return Data(
        *loaded,
        class_names=[c.name for c in classes],
        class_colors=[tuple(c.color) for c in classes],
    )


class GroundTruthOracle:
    """The in-process oracle: answers from the target-train ground truth (255 stays 255)."""

    def __init__(self, labels: torch.Tensor) -> None:
        self.labels = labels

    def __call__(
        self,
        index: torch.Tensor,
        ys: torch.Tensor,
        xs: torch.Tensor,
        group: str,
        scores: torch.Tensor,
    ) -> torch.Tensor:
        return self.labels[index, ys, xs].long()


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def evaluate(
    model: torch.nn.Module,
    split: SplitTensors,
    num_classes: int,
    device: torch.device,
    batch_size: int = 50,
    max_pixels: int = 1 << 23,
) -> ConfusionMatrix:
    """Per-class IoU over a split: logits upsampled to the label's resolution, 255 ignored; at
    most ``max_pixels`` pixels a batch (4 frames of 2048x1024), so memory stays bounded."""
    cm = ConfusionMatrix(num_classes)
    h, w = split.images.shape[-2:]
    batch_size = max(1, min(batch_size, max_pixels // (h * w)))
    model.eval()
    with torch.no_grad():
        for i in range(0, len(split.ids), batch_size):
            x = to_float(split.images[i : i + batch_size]).to(device)
            logits = upsample(model(x).main.float(), tuple(x.shape[-2:]))
            cm.update(logits.argmax(1).cpu(), split.labels[i : i + batch_size].long())
    return cm


def source_batch(
    data: Data, n: int, gen: torch.Generator, cfg: TrainConfig, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    idx = torch.randint(len(data.source.ids), (n,), generator=gen)
    x, y = data.source.images[idx].float(), data.source.labels[idx].long()
    if cfg.fda_beta > 0:
        from trainer.data.fda import fda_source_to_target

        tidx = torch.randint(len(data.target.ids), (n,), generator=gen)
        x = fda_source_to_target(x, data.target.images[tidx].float(), cfg.fda_beta)
        x = x.clamp(0, 255)
    flip = torch.rand(n, generator=gen) < 0.5
    x[flip], y[flip] = x[flip].flip(-1), y[flip].flip(-1)
    return to_float(x).to(device), y.to(device)


def cached_model(
    cfg: TrainConfig, data: Data, device: torch.device, cache_dir: Path | None
) -> tuple[torch.nn.Module, Path | None, bool]:
    """A fresh network, from the pre-training cache when it holds this config's weights.
    Returns (model, cache path or None, whether it was loaded)."""
    torch.manual_seed(cfg.seed)
    model = build_model(
        cfg.model,
        data.num_classes,
        embed_dim=cfg.embed_dim,
        pretrained=cfg.pretrained,
        frozen_bn=cfg.frozen_bn,
    ).to(device)
    if cfg.init_checkpoint:  # a trained segmentation network: no source pre-training
        part = init_weights(model, Path(cfg.init_checkpoint), data.class_names)
        log.info("initialised the %s from %s", part, cfg.init_checkpoint)
        return model, None, True
    key = pretrain_key(cfg, Path(cfg.data_root))
    path = cache_dir / f"pretrain-{key}.pt" if cache_dir else None
    if path is not None and path.is_file():
        model.load_state_dict(cached_weights(path, device))
        return model, path, True
    return model, path, False


def pretrain(
    cfg: TrainConfig,
    data: Data,
    device: torch.device,
    cache_dir: Path | None,
    progress: bool | str = True,
    *,
    wrap: Callable[[torch.nn.Module], torch.nn.Module] | None = None,
    writes: bool = True,
) -> torch.nn.Module:
    """Algorithm 1 line 2: train on (aligned) source, cached by config and data.

    One process trains the network itself; DDP (``trainer/distributed``) passes ``wrap``, which
    returns the network that runs this rank's rows of the global batch (the weights trained
    are ``model``'s, in place), and ``writes`` True on rank 0 only, which writes the cache."""
    model, path, loaded = cached_model(cfg, data, device, cache_dir)
    if loaded:
        return model
    net = wrap(model) if wrap is not None else model
    opt = torch.optim.SGD(
        param_groups(net, cfg.pretrain_lr, cfg.head_lr_mult, cfg.weight_decay),
        lr=cfg.pretrain_lr,
        momentum=cfg.momentum,
    )
    gen = torch.Generator().manual_seed(cfg.seed)
    n = cfg.batch_source + cfg.batch_target
    bar = Progress(cfg.pretrain_iterations, "pretrain", mode=progress_mode(progress))
    for it in range(cfg.pretrain_iterations):
        set_lr(opt, poly_lr(cfg.pretrain_lr, it, cfg.pretrain_iterations, cfg.poly_power))
        x, y = source_batch(data, n, gen, cfg, device)
        net.train()
        with torch.autocast(
            device.type, dtype=torch.bfloat16, enabled=cfg.amp and device.type == "cuda"
        ):
            out = net(x)
        size = tuple(x.shape[-2:])
        loss = source_loss(upsample(out.main.float(), size), upsample(out.aux.float(), size), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        bar.update(1, loss=loss.detach())  # read (a host sync) only when the line is shown
    bar.close()
    if path is not None and writes:
        save(path, payload(cfg, model, data_classes(data), data.target.images.shape[-2:]))
    return model


@dataclass
class AdaptResult:
    model: torch.nn.Module
    bank: LabelBank
    best_val: float
    best_iteration: int
    curve: list[dict[str, Any]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    queries: QueryLog = field(default_factory=QueryLog)


def adapt(
    model: torch.nn.Module,
    cfg: TrainConfig,
    data: Data,
    ask: Ask,
    spent: Spent,
    bank: LabelBank,
    device: torch.device,
    *,
    start: int = 0,
    state: LoopState | None = None,
    on_eval: Callable[[dict[str, Any]], None] | None = None,
    on_step: Callable[[int, LoopState], None] | None = None,
    progress: bool | str = True,
) -> AdaptResult:
    """Algorithm 1 lines 3-17 with model selection on target-val (best state is kept):
    ``cfg.passes`` passes over target-train (``cfg.iterations`` when set), evaluated every
    ``cfg.eval_every`` iterations (0: once per pass)."""
    torch.manual_seed(cfg.seed + 1)
    n_target = len(data.target.ids)
    iterations = cfg.adapt_iterations(n_target)
    length = cfg.pass_length(n_target)
    eval_every = cfg.eval_every or length
    check_model_selection(cfg, eval_every, iterations)
    cfg = for_budget(cfg, expected := budget_pixels(cfg, data), n_target)  # mcu-cap's G_l
    state = state or new_loop_state(cfg, expected, data.num_classes, n_target)
    state.dccm = state.dccm.to(device)
    opt = torch.optim.SGD(
        param_groups(model, cfg.lr, cfg.head_lr_mult, cfg.weight_decay),
        lr=cfg.lr,
        momentum=cfg.momentum,
    )
    gen = torch.Generator().manual_seed(cfg.seed + 2)
    order = target_order(n_target, iterations, cfg.batch_target, gen)
    best = AdaptResult(model, bank, -1.0, -1)
    best_state = copy.deepcopy(model.state_dict())
    timings: dict[str, float] = {}
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    bar = Progress(iterations, f"adapt {cfg.strategy}", mode=progress_mode(progress), start=start)
    for it in range(start, iterations):
        set_lr(opt, poly_lr(cfg.lr, it, iterations, cfg.poly_power))
        batch = _batch(data, order[it], cfg, gen, device)
        stats = adaptation_step(model, opt, batch, bank, state, cfg, it, ask, spent, gen, sync)
        for k, v in stats.seconds.items():
            timings[k] = timings.get(k, 0.0) + v
        best.queries.add(stats)
        if on_step is not None:
            on_step(it, state)
        adapt_update(bar, stats, bank, (it + 1) / length, iterations / length)
        if (it + 1) % eval_every == 0 or it + 1 == iterations:
            point = _eval_point(model, data, device, it + 1, bank)
            best.curve.append(point)
            if on_eval is not None:
                on_eval(point)
            if point["miou"] > best.best_val:
                best.best_val, best.best_iteration = point["miou"], it + 1
                best_state = copy.deepcopy(model.state_dict())
    bar.close()
    model.load_state_dict(best_state)
    best.timings = timings
    return best


def _batch(
    data: Data, tidx: torch.Tensor, cfg: TrainConfig, gen: torch.Generator, device: torch.device
) -> Batch:
    """Source images drawn at random, the target images ``tidx`` (their labels only for the
    supervised ceiling)."""
    sx, sy = source_batch(data, cfg.batch_source, gen, cfg, device)
    tx = to_float(data.target.images[tidx]).to(device)
    ty = data.target.labels[tidx].long().to(device) if cfg.selection == "all" else None
    return Batch(sx, sy, tx, tidx, ty)


def _eval_point(
    model: torch.nn.Module, data: Data, device: torch.device, iteration: int, bank: LabelBank
) -> dict[str, Any]:
    cm = evaluate(model, data.val, data.num_classes, device)
    return {
        "iteration": iteration,
        "labeled_pixels": bank.num_labeled,
        "miou": cm.miou(),
        "per_class_iou": cm.per_class_iou(),
        "split": "target-val",
    }


def local_spent(bank: LabelBank) -> Spent:
    """Budget spent per group in process: the labels stored (a skip costs nothing)."""
    return bank.counts
