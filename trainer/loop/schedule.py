"""The adaptation schedule in passes over target-train, and the record of what was queried.

A pass is one epoch over the target images: ``ceil(n / batch_target)`` batches of a fresh
seeded permutation, so every image is visited once per pass. ``cfg.passes`` passes make a
run; queries happen in the first ``cfg.query_passes`` of them (Algorithm 1's high phase in the
first half, decaying ``pi_high`` once per pass), so a label that arrives in the query window
is trained on in at least ``passes - query_passes`` later batches (10 with the defaults).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from trainer.config import TrainConfig
from trainer.loop.bundles import LoopState
from trainer.loop.stepstats import StepStats
from trainer.selection.sampling import ActiveSampler, AlgorithmOneState
from trainer.selection.views import QueryWindow


def new_loop_state(
    cfg: TrainConfig, expected: int, num_classes: int, target_images: int
) -> LoopState:
    """Thresholds, DCCM and the query window of a run over ``target_images`` target images.

    With ``cfg.iterations`` set (tiny runs) the window keeps its share of the run,
    ``query_passes / passes``; ``pi_high`` still decays once per pass over the data."""
    share = cfg.query_passes / cfg.passes if cfg.passes > 0 else 1.0
    window = QueryWindow.plan(
        expected,
        cfg.adapt_iterations(target_images),
        cfg.pass_length(target_images),
        min(1.0, share),
        cfg.high_cap_factor,
    )
    return LoopState(
        sampler=ActiveSampler(
            AlgorithmOneState(decay=cfg.decay, floor=cfg.pi_high_floor), cfg.high_catch_up
        ),
        window=window,
        dccm=torch.zeros(num_classes, num_classes),
    )


def target_order(n: int, iterations: int, batch: int, gen: torch.Generator) -> torch.Tensor:
    """Passes over the target set: (iterations, batch) image indices. Each pass is
    ``ceil(n / batch)`` batches of a fresh seeded permutation, so every image is in every pass;
    when ``batch`` does not divide ``n``, the last batch is topped up from the pass's start."""
    per_pass = -(-n // batch)
    passes = []
    for _ in range(-(-iterations // per_pass)):
        perm = torch.randperm(n, generator=gen)
        pad = perm.repeat(batch)[: per_pass * batch - n]
        passes.append(torch.cat([perm, pad]).view(per_pass, batch))
    if not passes:
        return torch.zeros(0, batch, dtype=torch.long)
    return torch.cat(passes)[:iterations]


@dataclass
class QueryLog:
    """Per iteration: pixels asked; in all: pixels answered, and answered pixels where the
    model's prediction at query time was not the answer (the label diagnostics' error rate)."""

    asked: list[int] = field(default_factory=list)
    answered: int = 0
    wrong: int = 0
    regions: int = 0  # region queries, their labelled pixels and the noisy ones among them
    region_pixels: int = 0
    region_noisy: int = 0

    def add(self, stats: StepStats) -> None:
        self.asked.append(stats.queried)
        self.answered += stats.answered
        self.regions += stats.regions
        self.region_pixels += stats.region_pixels
        self.region_noisy += stats.region_noisy
        if stats.answered:  # 0 otherwise; reading it would copy the step's losses to the host
            self.wrong += stats.query_wrong
