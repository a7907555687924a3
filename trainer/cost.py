"""What a person's answer costs, in seconds: the one cost model of the simulated annotator and
the one definition of a budget in annotator seconds (issue 24).

The mean seconds per query kind (a pixel click 2.4 s, a region click 3.0 s, a skip 1.2 s)
and their sources are the contract's table, ``server/schemas_cost.py``: the simulated oracle
that answers over HTTP (``adamcu-oracle --cost-model``) charges the same table, one fact in one
place.

``spread`` (0 by default): each charge is the mean times a factor drawn uniformly from
``[1 - spread, 1 + spread]`` by a seeded generator (our assumption, bounded so that a budget
is never overrun: :meth:`CostModel.most`).

A seconds budget is ``budget_seconds_per_image`` times the target images
(:func:`seconds_budget`): seconds per image mean the same at every frame size, since a click
costs the same on a 64x128 and on a 1024x2048 frame.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from server.schemas_cost import (  # noqa: F401 (re-exported: the trainer's names)
    CITYSCAPES_IMAGE_SECONDS,
    MEAN_SECONDS,
    PIXEL,
    PIXEL_SECONDS,
    REGION,
    REGION_SECONDS,
    SKIP,
    SKIP_SECONDS,
    spread_factor,
)


@dataclass(frozen=True)
class CostModel:
    """Mean seconds per query kind and the relative spread of a single charge."""

    seconds: Mapping[str, float] = field(default_factory=lambda: dict(MEAN_SECONDS))
    spread: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.spread < 1.0:
            raise ValueError(f"the cost spread must lie in [0, 1), got {self.spread}")
        if {PIXEL, REGION, SKIP} - set(self.seconds):
            raise ValueError(f"the cost model needs seconds for {PIXEL}, {REGION} and {SKIP}")

    def most(self, kind: str) -> float:
        """The most one query of ``kind`` may be charged: its mean times ``1 + spread``."""
        return self.seconds[kind] * (1.0 + self.spread)

    def charge(
        self, kind: str, answered: int, skipped: int, rng: np.random.Generator | None
    ) -> float:
        """Seconds for ``answered`` queries of ``kind`` and ``skipped`` skips, each drawn
        around its mean (exactly the means when ``spread`` is 0)."""
        total = answered * self.seconds[kind] + skipped * self.seconds[SKIP]
        if self.spread == 0.0 or answered + skipped == 0:
            return total
        rng = rng if rng is not None else np.random.default_rng()
        means = np.repeat([self.seconds[kind], self.seconds[SKIP]], [answered, skipped])
        return float((means * spread_factor(rng.random(len(means)), self.spread)).sum())


def seconds_budget(seconds_per_image: float, target_images: int) -> float:
    """The budget in annotator seconds of a run: ``seconds_per_image`` x target images."""
    if seconds_per_image < 0:
        raise ValueError(f"a seconds budget must be >= 0, got {seconds_per_image}")
    return float(seconds_per_image) * int(target_images)


class SecondsLedger:
    """Annotator seconds charged per group (the in-process simulated oracle's account)."""

    def __init__(self, model: CostModel, seed: int = 0) -> None:
        self.model, self.rng = model, np.random.default_rng(seed)
        self.by_group: dict[str, float] = {}

    def charge(self, kind: str, group: str, answered: int, skipped: int) -> float:
        """Books ``answered`` + ``skipped`` queries of ``kind`` under ``group``; returns their
        seconds."""
        seconds = self.model.charge(kind, answered, skipped, self.rng)
        self.by_group[group] = self.by_group.get(group, 0.0) + seconds
        return seconds

    def spent(self) -> dict[str, float]:
        return dict(self.by_group)

    @property
    def total(self) -> float:
        return sum(self.by_group.values())
