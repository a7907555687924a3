"""The data, source pre-training (cached) and evaluation around the adaptation loop
(Algorithm 1 is :mod:`trainer.loop.adapt`).

I/O lives here (data, checkpoints, progress); the math is in the modules it calls.
``GroundTruthOracle`` is the in-process oracle (the labeling service's is in ``trainer/worker/``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from server.schemas import budget_total
from trainer.config import TrainConfig
from trainer.data.folder import SplitTensors, load_folder, to_float
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
from trainer.loop.progress import Progress, progress_mode
from trainer.nets.forward import upsample
from trainer.nets.model import build_model, param_groups, poly_lr, set_lr

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
    # (N,H,W) int32 superpixels of target-train (region queries; trainer/data/superpixels.py)
    target_regions: torch.Tensor | None = None

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


def source_indices(n_images: int, n: int, gen: torch.Generator, distinct: bool) -> torch.Tensor:
    """Which source images a batch loads (Algorithm 1 line 5: "randomly load two images"):
    ``n`` uniform draws with replacement (``source_distinct = False``, ours: a batch may hold
    one image twice), or ``n`` distinct images (True; with replacement only when ``n`` exceeds
    the images)."""
    if distinct and n <= n_images:
        return torch.randperm(n_images, generator=gen)[:n]
    return torch.randint(n_images, (n,), generator=gen)


def source_batch(
    data: Data, n: int, gen: torch.Generator, cfg: TrainConfig, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """A source batch of ``n`` images (:func:`source_indices`), FDA-translated when
    ``cfg.fda_beta`` > 0, each flipped left-right with probability 0.5 when ``cfg.source_flip``
    (ours; the paper names no augmentation)."""
    idx = source_indices(len(data.source.ids), n, gen, cfg.source_distinct)
    x, y = data.source.images[idx].float(), data.source.labels[idx].long()
    if cfg.fda_beta > 0:
        from trainer.data.fda import fda_source_to_target

        tidx = torch.randint(len(data.target.ids), (n,), generator=gen)
        x = fda_source_to_target(x, data.target.images[tidx].float(), cfg.fda_beta)
        x = x.clamp(0, 255)
    if cfg.source_flip:
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
