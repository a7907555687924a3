"""One strategy, end to end and in process: pre-train (cached), adapt, select on val, test."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from trainer.bench.diagnostics import label_diagnostics
from trainer.config import QueryKind, Selection, TrainConfig
from trainer.cost import CostModel, SecondsLedger, seconds_budget
from trainer.data.superpixels import region_maps
from trainer.learning.labelbank import LabelBank
from trainer.loop.adapt import AdaptHooks, AdaptResult, adapt, local_oracle
from trainer.loop.checkpoint import data_classes, payload, save
from trainer.loop.train import Data, budget_pixels, evaluate, pick_device, pretrain


def run_strategy(
    cfg: TrainConfig,
    data: Data,
    cache_dir: Path | None,
    progress: bool | str = False,
    checkpoint: Path | None = None,
) -> dict[str, Any]:
    """Pre-train on source, adapt with ``cfg.strategy``'s configuration, report target-test
    mIoU of the state that scored best on target-val, with the label diagnostics of the run
    (``labels``; None for the budget-free strategies). ``checkpoint``: where to save that
    state with its config and label bank."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = pick_device(cfg.device)
    started = time.perf_counter()
    model = pretrain(cfg, data, device, cache_dir, progress)
    pretrain_seconds = time.perf_counter() - started
    n, _, h, w = data.target.images.shape
    bank = LabelBank(n, h, w)
    expected, iterations = budget_pixels(cfg, data), cfg.adapt_iterations(n)
    result = AdaptResult(model, bank, -1.0, 0)  # source-only: no adaptation
    ledger, budget_seconds = _timed(cfg, data, cache_dir)
    if iterations > 0:
        oracle = local_oracle(data.target.labels, bank, ledger)
        hooks = AdaptHooks(progress=progress)
        result = adapt(model, cfg, data, oracle, bank, device, hooks)
    val = evaluate(model, data.val, data.num_classes, device)
    test = evaluate(model, data.test, data.num_classes, device)
    labeled = data.target_pixels if cfg.selection == Selection.ALL else bank.num_labeled
    if checkpoint is not None:
        _save(checkpoint, cfg, model, bank, data)
    diagnostics = None
    if cfg.selection not in (Selection.NONE, Selection.ALL):
        truth = data.target.labels
        labels = bank.batch(torch.arange(bank.shape[0]))[0]
        diagnostics = label_diagnostics(labels, truth, data.num_classes, result.queries)
    return {
        "strategy": cfg.strategy,
        "budget_rate": cfg.budget_rate,
        "seed": cfg.seed,
        "expected_pixels": expected,
        "labeled_pixels": labeled,
        "labeled_rate": labeled / data.target_pixels,
        "val_miou": val.miou(),
        "test_miou": test.miou(),
        "test_per_class_iou": test.per_class_iou(),
        "best_iteration": result.best_iteration,
        "iterations": iterations,
        "passes": iterations / cfg.pass_length(n),
        "labels": diagnostics,
        "spent": result.spent,  # pixels per group (high: from G_h, Algorithm 1's M_a)
        **(result.high_supplied() if cfg.selection == Selection.ALGORITHM1 else {}),
        **_seconds(cfg, ledger, budget_seconds, result),
        "curve": result.curve,
        "timings": result.timings,
        "pretrain_seconds": pretrain_seconds,
        "seconds": time.perf_counter() - started,
    }


def _timed(
    cfg: TrainConfig, data: Data, cache_dir: Path | None
) -> tuple[SecondsLedger | None, float]:
    """A seconds budget's ledger (None under a pixel budget) and its seconds; the target
    images' superpixels (cached in ``cache_dir``) when the run asks regions."""
    budget_seconds = seconds_budget(cfg.budget_seconds_per_image, len(data.target.ids))
    ledger = None
    if budget_seconds > 0:
        ledger = SecondsLedger(CostModel(spread=cfg.cost_spread), seed=cfg.seed)
    if cfg.query_kind != QueryKind.PIXELS and data.target_regions is None:
        data.target_regions = region_maps(data.target.images, cfg.regions_per_image, cache_dir)
    return ledger, budget_seconds


def _seconds(
    cfg: TrainConfig, ledger: SecondsLedger | None, budget_seconds: float, result: AdaptResult
) -> dict[str, Any]:
    """A seconds-budget run's account: the budget and the seconds charged (annotator seconds
    and hours), the query kind, the region queries and their label noise (the share of
    region-labelled pixels whose ground truth differs from the region's dominant class)."""
    if ledger is None:
        return {}
    q = result.queries
    return {
        "query_kind": cfg.query_kind,
        "budget_seconds": budget_seconds,
        "target_images": result.bank.shape[0],
        "spent_seconds": ledger.total,
        "annotator_hours": ledger.total / 3600.0,
        "regions_asked": q.regions,
        "region_pixels": q.region_pixels,
        "region_noise": q.region_noisy / q.region_pixels if q.region_pixels else None,
    }


def _save(
    path: Path, cfg: TrainConfig, model: torch.nn.Module, bank: LabelBank, data: Data
) -> None:
    """The selected state in the one checkpoint format, label bank kept (trainer/checkpoint)."""
    size = data.target.images.shape[-2:]
    save(path, payload(cfg, model, data_classes(data), size, bank, keep_bank=True))
