"""A paper-scale dry run (``adamcu dry-run``): the real selection policies, budget ledger,
label bank and MCU pixel sets over the whole pass schedule at Cityscapes' size, no network.

Each (strategy, budget) is one run of the adaptation loop's asking half as
:func:`trainer.loop.adapt.adapt` drives it: the strategy's config (:func:`configure`,
:func:`for_budget`), its loop state and query window (:func:`new_loop_state`), its batches in
pass order (:func:`target_order`), the budget read once per iteration through
:func:`asking_at` from the oracle's ``spent`` (the labels stored in the :class:`LabelBank`, as
:func:`local_oracle` does), and :func:`trainer.loop.step.ask` (the policy of
:func:`make_policy`, the oracle, the merge into the bank). What replaces the network: the
score maps of :class:`trainer.bench.scenes.SceneCache` (a few bundled street scenes at the
size asked, network-like logits, reused with flips and x offsets), S (Eq. 1) from them and the
groups from the run's own Algorithm 1 thresholds (calibrated on the first batch, decayed by
the sampler), as :func:`trainer.loop.step.forward` makes them. No backward pass runs.

The MCU pixel sets (:func:`trainer.learning.pixel_sets.build_pixel_sets` on
:func:`trainer.loop.learn.mcu_inputs`, what the learning step builds) are counted for the
strategies with MCUs on ``mcu_steps`` iterations spread evenly over the whole run (sampled:
building them at 512x1024 takes longer than a selection); the iterations after the query
window ask nothing, the bank no longer changes, so only the sampled ones run there.
"""

from __future__ import annotations

import math
import resource
import time
from collections.abc import Callable

import torch

from server.schemas import budget_total
from trainer.bench.dryrun_args import DryRunSpec
from trainer.bench.scenes import SceneCache
from trainer.config import TrainConfig
from trainer.constants import IGNORE_INDEX
from trainer.learning.labelbank import LabelBank
from trainer.learning.pixel_sets import build_pixel_sets
from trainer.loop.bundles import Batch, Forward, LoopState, Oracle
from trainer.loop.learn import mcu_inputs
from trainer.loop.progress import Progress
from trainer.loop.schedule import new_loop_state, target_order
from trainer.loop.step import ask, asking_at, calibrate_thresholds
from trainer.loop.stepstats import StepStats
from trainer.nets.output import SegOutput
from trainer.selection.policy import make_policy
from trainer.selection.uncertainty import partition
from trainer.selection.views import BudgetView, Picked, Policy, ScoreMaps
from trainer.strategies import configure, for_budget


class TimedPolicy(Policy):
    """A policy whose every call's CPU seconds (``time.process_time``) are recorded."""

    def __init__(self, inner: Policy) -> None:
        self.inner, self.seconds = inner, []

    def select(
        self, maps: ScoreMaps, budget: BudgetView, generator: torch.Generator | None = None
    ) -> Picked:
        start = time.process_time()
        picked = self.inner.select(maps, budget, generator)
        self.seconds.append(time.process_time() - start)
        return picked

    def pick(
        self, maps: ScoreMaps, budget: BudgetView, generator: torch.Generator | None
    ) -> Picked:
        return self.inner.pick(maps, budget, generator)


def strategy_config(spec: DryRunSpec, strategy: str, rate: float) -> TrainConfig:
    """The strategy's config with the dry run's schedule and budget rate."""
    changes = {"passes": spec.passes, "query_passes": spec.query_passes, "budget_rate": rate}
    return configure(TrainConfig(seed=spec.seed), strategy, **changes)


def forward_of(
    cache: SceneCache, images: torch.Tensor, state: LoopState, cfg: TrainConfig
) -> tuple[Forward, torch.Tensor]:
    """What :func:`trainer.loop.step.forward` hands on for the rows ``images``: S, the groups
    by the run's thresholds (calibrated on the first batch), softmax, argmax, a stand-in
    embedding map (1 channel at stride 8: the sets' sizes do not depend on it); and the
    ground truth (the source rows' labels)."""
    prob, score, pred, label = cache.batch(images)
    if not state.calibrated:
        calibrate_thresholds(state, score, cfg)
    s = state.sampler.state
    groups = partition(score, s.pi_high, s.pi_low)
    emb = torch.zeros(len(images), 1, score.shape[-2] // 8, score.shape[-1] // 8)
    return Forward(SegOutput(prob, prob, emb), prob, prob, score, groups, prob, pred, 0), label


def mcu_counts(
    cache: SceneCache,
    tgt: Forward,
    images: tuple[torch.Tensor, torch.Tensor],
    bank: LabelBank,
    run: tuple[TrainConfig, LoopState, torch.Generator],
) -> dict[str, int]:
    """One iteration's MCU sets: the source rows ``images[1]`` (every pixel labelled) and the
    target rows ``images[0]`` with their labels from the bank: labels in, pixels drawn."""
    cfg, state, gen = run
    src, src_y = forward_of(cache, images[1], state, cfg)
    tgt_y = bank.batch(images[0])[0]
    both = Forward(
        SegOutput(src.prob, src.prob, torch.cat([src.out.embedding, tgt.out.embedding])),
        src.prob,
        src.prob,
        torch.cat([src.score, tgt.score]),
        torch.cat([src.groups, tgt.groups]),
        tgt.prob,
        torch.cat([src.pred, tgt.pred]),
        len(images[1]),
    )
    inputs = mcu_inputs(cfg, both, src_y, tgt_y)
    sets = build_pixel_sets(inputs, cfg, gen)
    return {
        "target_labels": int((tgt_y != IGNORE_INDEX).sum()),
        "target_pseudo": int(inputs.target_low.sum()),
        "pixels": len(sets.label),
        "target_pixels": int((sets.image >= len(images[1])).sum()),
        "anchors": int(sets.anchor.sum()),
    }


def run_one(
    spec: DryRunSpec,
    cache: SceneCache,
    strategy: str,
    rate: float,
    progress: Callable[[int], Progress] | None = None,
) -> dict:
    """One strategy at one budget over the whole schedule: the bank, the per-call selection
    seconds, the sampled MCU counts, and the wall seconds. ``progress(total)``: the bar that
    counts the iterations that run (the query window's and the sampled ones)."""
    start, cpu = time.perf_counter(), time.process_time()
    cfg = strategy_config(spec, strategy, rate)
    n, h, w = spec.images, spec.height, spec.width
    expected = budget_total(rate, n * h * w)
    cfg = for_budget(cfg, expected, n * h * w)  # mcu-cap's G_l
    state = new_loop_state(cfg, expected, spec.classes, n)
    gen = torch.Generator().manual_seed(cfg.seed + 2)
    iterations = cfg.adapt_iterations(n)
    order = target_order(n, iterations, cfg.batch_target, gen)
    sources = torch.randint(0, n, (iterations, cfg.batch_source), generator=gen)
    bank = LabelBank(n, h, w)
    oracle = Oracle(cache.ask, bank.counts, expected)  # spent: the labels in the bank
    policy = TimedPolicy(make_policy(cfg, state.sampler))
    sampled = sampled_steps(iterations, spec.mcu_steps) if cfg.contrast else set()
    mcu: list[dict[str, int]] = []
    stub = torch.empty(0, 3, 1, 1)
    steps = sorted(set(range(state.window.query_until)) | sampled)
    bar = progress(len(steps)) if progress is not None else Progress(len(steps), "", mode="off")
    for it in steps:
        fwd, _ = forward_of(cache, order[it], state, cfg)
        asking = asking_at(policy, state, it, oracle)
        if asking is not None:
            batch = Batch(stub, stub, stub, order[it])
            ask(fwd, batch, bank, asking, gen, StepStats(phase="none"))
        if it in sampled:
            mcu.append(mcu_counts(cache, fwd, (order[it], sources[it]), bank, (cfg, state, gen)))
        bar.update()
    bar.close()
    return {
        "strategy": strategy,
        "budget": rate,
        "expected": expected,
        "pseudo_labels": cfg.pseudo_labels,
        "bank": bank,
        "iterations": iterations,
        "query_iterations": state.window.query_until,
        "call_seconds": policy.seconds,
        "images_per_call": cfg.batch_target,
        "mcu": mcu,
        "cpu_seconds": time.process_time() - cpu,
        "wall_seconds": time.perf_counter() - start,
    }


def peak_rss_mb() -> float:
    """The process's peak resident memory so far, MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def sampled_steps(iterations: int, k: int) -> set[int]:
    """``k`` iterations spread evenly over ``[0, iterations)``."""
    if k <= 0 or iterations <= 0:
        return set()
    return {min(iterations - 1, math.floor(i * iterations / k)) for i in range(k)}
