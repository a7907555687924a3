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
from trainer.config import TrainConfig
from trainer.labelbank import LabelBank
from trainer.losses import cross_entropy, source_loss
from trainer.model import build_model, param_groups
from trainer.step import Batch, adaptation_step, upsample
from trainer.strategies import configure
from trainer.train import GroundTruthOracle, local_spent, new_loop_state, pick_device


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


def measure(
    cfg: TrainConfig, height: int, width: int, classes: int, iterations: int, warmup: int = 3
) -> dict[str, Any]:
    """Median seconds per iteration of both steps on one net and batch, plus the shares."""
    device = pick_device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    model, opt = _model_and_optimizer(cfg, classes, device)
    batch, target_labels = make_batch(cfg, height, width, classes, device, gen)
    target_y = target_labels[batch.target_index].long().to(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    ce_times = _time(lambda: ce_step(model, opt, batch, target_y, cfg), iterations, warmup, sync)
    ce_peak = _peak(device)
    bank = LabelBank(len(target_labels), height, width)
    # a budget large enough that every measured step is still querying (Algorithm 1 active)
    cfg = cfg.replace(iterations=10 * (iterations + warmup))
    state = new_loop_state(
        cfg, budget_total(cfg.budget_rate, bank.num_pixels), classes, len(target_labels)
    )
    oracle, spent = GroundTruthOracle(target_labels), local_spent(bank)
    shares: dict[str, list[float]] = {}
    step = {"it": 0}

    def full() -> None:
        stats = adaptation_step(
            model, opt, batch, bank, state, cfg, step["it"], oracle, spent, gen, sync
        )
        step["it"] += 1
        total = sum(stats.seconds.values())
        for k, v in stats.seconds.items():
            shares.setdefault(k, []).append(v / total)

    full_times = _time(full, iterations, warmup, sync)
    ce, ada = statistics.median(ce_times), statistics.median(full_times)
    share = {k: statistics.median(v[warmup:]) for k, v in shares.items()}
    return {
        "device": str(device),
        "model": cfg.model,
        "height": height,
        "width": width,
        "classes": classes,
        "amp": cfg.amp and device.type == "cuda",
        "iterations": iterations,
        "ce_seconds": ce,
        "full_seconds": ada,
        "ratio": ada / ce,
        "share": share,
        "scoring_selection_share": share.get("scoring", 0) + share.get("selection", 0),
        "contrast_share": share.get("contrast", 0),
        "ce_peak_mib": ce_peak,
        "full_peak_mib": _peak(device),
        "labeled_pixels": bank.num_labeled,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }


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


def _peak(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated() / 2**20


def run_speed(
    out: Path,
    *,
    model: str = "small",
    height: int = 64,
    width: int = 128,
    classes: int = 9,
    iterations: int = 30,
    device: str = "auto",
    amp: bool = True,
    log=print,
) -> dict[str, Any]:
    cfg = configure(TrainConfig(model=model, device=device, amp=amp), "full", budget_rate=0.05)
    result = measure(cfg, height, width, classes, iterations)
    log(
        f"{result['device']} {model} {height}x{width}: CE step {result['ce_seconds']:.4f} s, "
        f"ADA-MCU step {result['full_seconds']:.4f} s, ratio {result['ratio']:.2f}; "
        f"scoring+selection {100 * result['scoring_selection_share']:.1f}% of the step, "
        f"contrast+DCCM {100 * result['contrast_share']:.1f}%"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    return result
