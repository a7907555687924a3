"""Speed benchmark: the full ADA-MCU step against a plain CE step, same batch and net.

Prints seconds per iteration of both, their ratio, and the share of the full step spent in
scoring (Eq. 1-3), selection (Algorithm 1), the oracle, and the contrastive losses + DCCM.
Needs no dataset: random images and labels at the requested size (the paper's 512x1024 on
a GPU, 64x128 on the CPU).
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from server.schemas import budget_total
from trainer.bench.gpu_args import StepShape
from trainer.bench.syncs import SyncCounter, count_aten_ops, cuda_sync_count
from trainer.config import TrainConfig
from trainer.learning.labelbank import LabelBank
from trainer.learning.losses import cross_entropy, source_loss
from trainer.loop.adapt import local_oracle
from trainer.loop.bundles import Batch, Learner, fixed_shapes
from trainer.loop.schedule import new_loop_state
from trainer.loop.step import adaptation_step, asking_at
from trainer.loop.train import pick_device
from trainer.nets.forward import upsample
from trainer.nets.model import build_model, param_groups
from trainer.selection.policy import make_policy
from trainer.strategies import configure


def _blocky_labels(n: int, h: int, w: int, classes: int, gen: torch.Generator) -> torch.Tensor:
    """Piecewise-constant labels (8x8 blocks), so predictions and errors look like a scene's."""
    coarse = torch.randint(classes, (n, 1, max(1, h // 8), max(1, w // 8)), generator=gen)
    return torch.nn.functional.interpolate(coarse.float(), size=(h, w)).long()[:, 0]


def make_batch(
    cfg: TrainConfig,
    h: int,
    w: int,
    classes: int,
    device: torch.device,
    gen: torch.Generator,
    n_target_images: int = 64,
) -> tuple[Batch, torch.Tensor]:
    sx = torch.randn(cfg.batch_source, 3, h, w, generator=gen)
    tx = torch.randn(cfg.batch_target, 3, h, w, generator=gen)
    sy = _blocky_labels(cfg.batch_source, h, w, classes, gen)
    target_labels = _blocky_labels(n_target_images, h, w, classes, gen).to(torch.uint8)
    index = torch.arange(cfg.batch_target)
    batch = Batch(sx.to(device), sy.to(device), tx.to(device), index)
    return batch, target_labels


def ce_step(
    model: torch.nn.Module,
    opt: torch.optim.Optimizer,
    batch: Batch,
    target_y: torch.Tensor,
    cfg: TrainConfig,
) -> None:
    """The plain baseline: one forward of the same 4 images, CE on source and target."""
    device = batch.source_x.device
    n = batch.source_x.shape[0]
    size = tuple(batch.source_x.shape[-2:])
    with torch.autocast(
        device.type, dtype=torch.bfloat16, enabled=cfg.amp and device.type == "cuda"
    ):
        out = model(torch.cat([batch.source_x, batch.target_x]))
    main = upsample(out.main.float(), size)
    loss = source_loss(main[:n], upsample(out.aux[:n].float(), size), batch.source_y)
    loss = loss + cross_entropy(main[n:], target_y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def _model_and_optimizer(
    cfg: TrainConfig, classes: int, device: torch.device
) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    model = build_model(cfg.model, classes, embed_dim=cfg.embed_dim).to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    groups = param_groups(model, cfg.lr, cfg.head_lr_mult, cfg.weight_decay)
    return model, torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)


PARTS = {  # report name -> the step's timer laps
    "scoring": ("scoring",),
    "selection": ("selection", "oracle"),
    "seg_losses": ("seg_loss",),
    "mcu": ("contrast",),
    "backward": ("backward",),
}


def measure(
    cfg: TrainConfig,
    height: int,
    width: int,
    classes: int,
    iterations: int,
    warmup: int = 3,
    profile_ops: bool = False,
) -> dict[str, Any]:
    """Median s/iteration of both steps on one net and batch, the ADA-MCU step's parts, peak
    allocated / reserved memory of a step of each (CUDA), host syncs per ADA-MCU step (querying
    and after the query window), with ``profile_ops`` the aten ops per step of both. Timed
    steps run without per-part laps (device syncs); ``max(3, iterations // 2)`` more give the
    shares."""
    device = pick_device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    model, opt = _model_and_optimizer(cfg, classes, device)
    batch, target_labels = make_batch(cfg, height, width, classes, device, gen)
    target_y = target_labels[batch.target_index].long().to(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    ce = lambda: ce_step(model, opt, batch, target_y, cfg)  # noqa: E731
    ce_times = _time(ce, iterations, warmup, sync)
    ce_mem = _peak(device, ce, sync)
    full, shares, state = _full_runner(cfg, model, opt, batch, target_labels, classes, gen, sync)
    full_times = _time(lambda: full(False), iterations, warmup, sync)
    full_mem = _peak(device, lambda: full(False), sync)
    [full(True) for _ in range(max(3, iterations // 2))]
    share = {k: statistics.median(v) for k, v in shares.items()}
    ce_s, ada = statistics.median(ce_times), statistics.median(full_times)
    result: dict[str, Any] = {
        "device": str(device),
        "model": cfg.model,
        "height": height,
        "width": width,
        "classes": classes,
        "amp": cfg.amp and device.type == "cuda",
        **{k: getattr(cfg, k) for k in ("channels_last", "compile_step")},
        "iterations": iterations,
        "ce_seconds": ce_s,
        "full_seconds": ada,
        "ratio": ada / ce_s,
        "share": share,
        "parts": {k: sum(share.get(n, 0.0) for n in laps) for k, laps in PARTS.items()},
        "scoring_selection_share": share.get("scoring", 0) + share.get("selection", 0),
        "contrast_share": share.get("contrast", 0),
        **{f"ce_{k}": v for k, v in ce_mem.items()},
        **{f"full_{k}": v for k, v in full_mem.items()},
        "fixed_shapes": fixed_shapes(cfg, device),
        "syncs_per_step": _syncs(device, lambda: full(False, None, True)),
        "syncs_per_quiet_step": _syncs(device, lambda: full(False, state.window.query_until, True)),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    if profile_ops:
        result["ce_aten_ops"] = count_aten_ops(ce)
        result["full_aten_ops"] = count_aten_ops(lambda: full(False))
    return result


def _full_runner(
    cfg: TrainConfig,
    model: torch.nn.Module,
    opt: torch.optim.Optimizer,
    batch: Batch,
    target_labels: torch.Tensor,
    classes: int,
    gen: torch.Generator,
    sync: Any,
) -> tuple[Any, dict[str, list[float]], Any]:
    """``full(laps, iteration=None, sync_free=False)`` runs one ADA-MCU step (the next
    iteration, querying, or ``iteration``; ``sync_free``: with ``fixed_shapes="on"``, the
    path a GPU takes); with ``laps`` it times the parts (device syncs) into the shares."""
    bank = LabelBank(len(target_labels), *target_labels.shape[1:])
    # a budget large enough that every measured step is still querying (Algorithm 1 active)
    cfg = cfg.replace(iterations=1000)
    state = new_loop_state(
        cfg, budget_total(cfg.budget_rate, bank.num_pixels), classes, len(target_labels)
    )
    oracle = local_oracle(target_labels, bank)
    policy = make_policy(cfg, state.sampler)
    shares: dict[str, list[float]] = {}
    step = {"it": 0}

    fixed = cfg.replace(fixed_shapes="on")

    def full(laps: bool, iteration: int | None = None, sync_free: bool = False) -> None:
        it = step["it"] if iteration is None else iteration
        learner = Learner(model, opt, fixed if sync_free else cfg, state, gen)
        learner.sync = sync if laps else _none
        stats = adaptation_step(learner, batch, bank, asking_at(policy, state, it, oracle))
        step["it"] += iteration is None
        if laps:
            total = sum(stats.seconds.values())
            for k, v in stats.seconds.items():
                shares.setdefault(k, []).append(v / total)

    return full, shares, state


def _none() -> None:
    return None


def _time(fn: Any, iterations: int, warmup: int, sync: Any) -> list[float]:
    times = []
    for i in range(warmup + iterations):
        sync()
        t = time.perf_counter()
        fn()
        sync()
        if i >= warmup:
            times.append(time.perf_counter() - t)
    return times


def _peak(device: torch.device, fn: Any, sync: Any) -> dict[str, float | None]:
    """Peak allocated and reserved MiB of one call of ``fn`` (CUDA; None elsewhere)."""
    if device.type != "cuda":
        return {"peak_mib": None, "reserved_mib": None}
    sync()
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    sync()
    return {
        "peak_mib": torch.cuda.max_memory_allocated(device) / 2**20,
        "reserved_mib": torch.cuda.max_memory_reserved(device) / 2**20,
    }


def _syncs(device: torch.device, fn: Any) -> int:
    """Host syncs of one call: CUDA's sync warnings, or the counted calls on the CPU."""
    if device.type == "cuda":
        return cuda_sync_count(fn)[1]
    counter = SyncCounter()
    with counter:
        fn()
    return counter.count


def run_speed(
    out: Path,
    base: TrainConfig,
    shape: StepShape = StepShape(64, 128, 9),
    iterations: int = 30,
    log=print,
) -> dict[str, Any]:
    """``measure`` on one setting with the aten-op counts; prints one line, writes ``out``.
    ``base``: the network and the machine's fields (``model``, ``device``, ``amp``,
    ``compile_step``, ``threads``); the strategy is ``full``."""
    cfg = configure(base, "full", budget_rate=0.05)
    height, width, classes = shape
    model = cfg.model
    result = measure(cfg, height, width, classes, iterations, profile_ops=True)
    parts = ", ".join(f"{k} {100 * v:.1f}%" for k, v in result["parts"].items())
    log(
        f"{result['device']} {model} {height}x{width}: CE step {result['ce_seconds']:.4f} s, "
        f"ADA-MCU step {result['full_seconds']:.4f} s, ratio {result['ratio']:.2f}; "
        f"of the ADA-MCU step: {parts}; aten ops per step: CE {result['ce_aten_ops']}, "
        f"ADA-MCU {result['full_aten_ops']}; host syncs per ADA-MCU step: "
        f"{result['syncs_per_step']} querying, {result['syncs_per_quiet_step']} after the window"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    return result
