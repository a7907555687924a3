"""The benchmark grids: which strategies, budgets, seeds and shifts each preset runs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from trainer.data.synth import DEFAULT_SHIFT, DEFAULT_SIZE
from trainer.strategies import BUDGET_FREE, REGION_STRATEGIES, STRATEGIES

ALL = tuple(s for s in STRATEGIES if s not in REGION_STRATEGIES)  # the pixel-budget rows
# Table VI's ablation rows (AL w/o AS, AL w AS, +MCU_i, +MCU_d, p2p only); `full` is a main row
ABLATION = ("entropy", "al-as", "mcu-i", "mcu-d", "p2p")
MAIN = tuple(s for s in ALL if s not in ABLATION)
# issue 20 item 5: the rows the resolution ladder compares at every size
LADDER = ("random", "pixelpick", "ripu", "full", "mcu-cap", "supervised")
# issue 24 item 5: pixels vs regions at equal annotator time. 15, 60 and 240 minutes over
# Cityscapes' 2,975 training frames are 0.30, 1.21 and 4.84 s per target image; the bundled
# runs get the same seconds per image (a click costs the same at every frame size), so 9.7,
# 38.7 and 155 s over the `standard` preset's 32 target images
# the `standard` preset's rows that take a budget, then the region rows
SECONDS_ROWS = tuple(s for s in MAIN if s not in BUDGET_FREE) + tuple(REGION_STRATEGIES)
CITYSCAPES_TRAIN_IMAGES = 2975
SECONDS_PER_IMAGE = tuple(round(60 * m / CITYSCAPES_TRAIN_IMAGES, 4) for m in (15, 60, 240))
# the `standard` preset's images and schedule (the ladder's too); target-val every 2 passes
STANDARD_COUNTS = {"source-train": 300, "target-train": 32, "target-val": 40, "target-test": 100}
STANDARD_CONFIG = {"pretrain_iterations": 1000, "eval_every": 32}


@dataclass(frozen=True)
class Preset:
    """A grid: ``strategies`` at every budget (a budget-free one once per seed), ``ablation``
    strategies at the middle budget and on the first shift only, every seed, every shift; the
    benchmark rendered at ``size`` (height, width) pixels."""

    counts: dict[str, int]
    strategies: tuple[str, ...]
    budgets: tuple[float, ...]
    seeds: tuple[int, ...]
    config: dict[str, Any] = field(default_factory=dict)
    ablation: tuple[str, ...] = ()
    shifts: tuple[str, ...] = (DEFAULT_SHIFT,)
    size: tuple[int, int] = DEFAULT_SIZE
    # budgets in annotator seconds per target image (trainer.cost); when given, every run is
    # timed and ``budgets`` is not used
    seconds: tuple[float, ...] = ()

    @property
    def ablation_budget(self) -> float:
        return self.budgets[len(self.budgets) // 2]


PRESETS: dict[str, Preset] = {
    # runs in the test suite: a fixed 8 iterations, not the pass schedule; queries in the
    # first half (query_passes / passes), so that Algorithm 1's medium phase has 2 batches
    "smoke": Preset(
        counts={"source-train": 48, "target-train": 24, "target-val": 12, "target-test": 12},
        strategies=ALL,
        budgets=(0.017,),
        seeds=(0,),
        config={
            "pretrain_iterations": 30,
            "iterations": 8,
            "passes": 2.0,
            "query_passes": 1.0,
            "eval_every": 4,
        },
    ),
    "quick": Preset(
        counts={"source-train": 300, "target-train": 200, "target-val": 50, "target-test": 100},
        strategies=("source-only", "random", "entropy", "al-as", "full", "supervised"),
        budgets=(0.017,),
        seeds=(0,),
        config={"pretrain_iterations": 800},
    ),
    # <= 75 min on 2 cores (docs/results.md has the estimate): the default schedule (16
    # passes), few target images; Table VI's rows at the middle budget on the default shift
    "standard": Preset(
        counts=STANDARD_COUNTS,
        strategies=MAIN,
        budgets=(0.001, 0.005, 0.017),
        seeds=(0, 1, 2),
        config=STANDARD_CONFIG,
        ablation=ABLATION,
        shifts=(DEFAULT_SHIFT, "hard"),
    ),
    # pixels vs regions at equal simulated annotator time (issue 24 item 5), `standard`'s
    # images and schedule
    "seconds": Preset(
        counts=STANDARD_COUNTS,
        strategies=SECONDS_ROWS,
        budgets=(0.017,),
        seeds=(0, 1, 2),
        config=STANDARD_CONFIG,
        shifts=(DEFAULT_SHIFT, "hard"),
        seconds=SECONDS_PER_IMAGE,
    ),
    # the resolution ladder (issue 20 item 5): `standard`'s images, schedule and seeds, the
    # ladder's rows at 0.1 % and 1.7 %; `--size 256x512` renders the same scenes 4x larger
    "ladder": Preset(
        counts=STANDARD_COUNTS,
        strategies=LADDER,
        budgets=(0.001, 0.017),
        seeds=(0, 1, 2),
        config=STANDARD_CONFIG,
        shifts=(DEFAULT_SHIFT, "hard"),
    ),
    # one GPU (device auto; `--workers 4` share it): every strategy at every budget, 12x the
    # target images; ~0.8 M adaptation iterations (docs/results.md has the estimate)
    "paper": Preset(
        counts={"source-train": 2000, "target-train": 500, "target-val": 100, "target-test": 500},
        strategies=ALL,
        budgets=(0.001, 0.005, 0.017, 0.068),
        seeds=(0, 1, 2),
        config={"pretrain_iterations": 4000, "eval_every": 500},
        shifts=(DEFAULT_SHIFT, "hard"),
    ),
}
