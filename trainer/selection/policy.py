"""One selection policy for every mode: the registry from the config's selection to a policy.

Every strategy implements :class:`trainer.selection.views.Policy`: score maps (S, groups,
softmax, the unasked pixels) and a :class:`~trainer.selection.views.BudgetView` in, the pixels
to ask and their group out. The benchmark loop, DDP (through the loop) and the session's
rounds all call the policy :func:`make_policy` returns; the selection names are the one enum
:class:`trainer.config.Selection`, each mapped here to its policy:

- ``none`` / ``all``: :class:`NoQueries` (source-only, MinEnt; the supervised ceiling);
- ``algorithm1``: :class:`trainer.selection.sampling.ActiveSampler` (the run's own sampler,
  whose thresholds the groups are made with and a checkpoint saves);
- ``random`` / ``entropy`` / ``ripu``: :class:`TopK` and :class:`Uniform` on the budget left
  spread over the window;
- ``pixelpick``, ``image-wise``, ``ripu-pa`` / ``ripu-ra``: :mod:`trainer.selection.comparison`;
- ``mcu-cap``: :class:`trainer.selection.mcucap.McuCap`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from trainer.config import QueryKind, Selection, TrainConfig
from trainer.cost import PIXEL, REGION, CostModel, seconds_budget
from trainer.ops.draws import top_k_select, uniform_select
from trainer.selection.comparison import ImageWise, PixelPick, Ripu
from trainer.selection.mcucap import CapSettings, McuCap
from trainer.selection.regions import RegionCap, RegionRandom, RegionRank
from trainer.selection.ripu import pa_score
from trainer.selection.sampling import ActiveSampler
from trainer.selection.seconds import Alternate, SecondsBudget
from trainer.selection.views import BudgetView, Picked, Policy, ScoreMaps


class NoQueries(Policy):
    """Asks nothing."""

    def pick(
        self, maps: ScoreMaps, budget: BudgetView, generator: torch.Generator | None
    ) -> Picked:
        return Picked(torch.zeros_like(maps.unasked), "none")


class Uniform(Policy):
    """Random pixels: the budget left spread evenly over the window, uniformly."""

    def pick(
        self, maps: ScoreMaps, budget: BudgetView, generator: torch.Generator | None
    ) -> Picked:
        return Picked(uniform_select(maps.unasked, budget.paced(), generator), "random")


def _ripu(maps: ScoreMaps) -> torch.Tensor:
    """RIPU's pixel score (region impurity x entropy) in 3x3 windows: the plain top-k form."""
    return pa_score(maps.prob, 1)


class TopK(Policy):
    """The highest-ranked unasked pixels, the budget left spread evenly over the window:
    ``rank`` is S (Eq. 1: ``entropy``) or RIPU's pixel score (``ripu``)."""

    def __init__(self, group: str, rank: Callable[[ScoreMaps], torch.Tensor]) -> None:
        self.group, self.rank = group, rank

    def pick(
        self, maps: ScoreMaps, budget: BudgetView, generator: torch.Generator | None
    ) -> Picked:
        return Picked(top_k_select(self.rank(maps), maps.unasked, budget.paced()), self.group)


PolicyMaker = Callable[[TrainConfig, ActiveSampler], Policy]

POLICIES: dict[Selection, PolicyMaker] = {
    Selection.NONE: lambda cfg, sampler: NoQueries(),
    Selection.ALL: lambda cfg, sampler: NoQueries(),
    Selection.RANDOM: lambda cfg, sampler: Uniform(),
    Selection.ENTROPY: lambda cfg, sampler: TopK("entropy", lambda maps: maps.score),
    Selection.RIPU: lambda cfg, sampler: TopK("ripu", _ripu),
    Selection.ALGORITHM1: lambda cfg, sampler: sampler,
    Selection.PIXELPICK: lambda cfg, sampler: PixelPick(cfg.pixelpick_top),
    Selection.RIPU_PA: lambda cfg, sampler: Ripu(cfg.ripu_radius_k, regions=False),
    Selection.RIPU_RA: lambda cfg, sampler: Ripu(cfg.ripu_region_k, regions=True),
    Selection.IMAGE_WISE: lambda cfg, sampler: ImageWise(),
    Selection.MCU_CAP: lambda cfg, sampler: McuCap(
        CapSettings(cfg.cap_class_share, cfg.cap_impurity, cfg.cap_radius_k)
    ),
}


# the selections with a region form (issue 24, trainer/selection/regions.py)
REGION_POLICIES: dict[Selection, Callable[[], Policy]] = {
    Selection.RANDOM: RegionRandom,
    Selection.RIPU: RegionRank,
    Selection.RIPU_PA: RegionRank,
    Selection.RIPU_RA: RegionRank,
    Selection.MCU_CAP: RegionCap,
    Selection.ALGORITHM1: RegionCap,
}


def make_policy(cfg: TrainConfig, sampler: ActiveSampler, target_images: int = 0) -> Policy:
    """The policy of ``cfg.selection``; ``sampler`` holds the run's Algorithm 1 thresholds.

    ``cfg.query_kind`` "regions" takes the selection's region form (:data:`REGION_POLICIES`),
    "both" alternates the two (:class:`Alternate`); with ``budget_seconds_per_image`` > 0 each
    runs under the seconds budget of ``target_images`` images (:class:`SecondsBudget`).
    Regions need a seconds budget: under a pixel budget a region click is not a pixel."""
    kind, seconds = QueryKind(cfg.query_kind), cfg.budget_seconds_per_image
    pixels = POLICIES[Selection(cfg.selection)](cfg, sampler)
    if kind == QueryKind.PIXELS and seconds <= 0:
        return pixels
    if kind != QueryKind.PIXELS and seconds <= 0:
        raise ValueError(
            f"query_kind {cfg.query_kind!r} needs a budget in annotator seconds: set "
            "budget_seconds_per_image > 0 (a region click is one query, not its pixels)"
        )
    if kind != QueryKind.PIXELS and Selection(cfg.selection) not in REGION_POLICIES:
        names = sorted(s.value for s in REGION_POLICIES)
        raise ValueError(f"selection {cfg.selection!r} has no region form; choose from {names}")
    if target_images <= 0:
        raise ValueError("a seconds budget needs the number of target images")
    total, costs = seconds_budget(seconds, target_images), CostModel(spread=cfg.cost_spread)
    factor = cfg.high_cap_factor
    timed = SecondsBudget(pixels, total, costs.most(PIXEL), factor)
    if kind == QueryKind.PIXELS:
        return timed
    regions = SecondsBudget(
        REGION_POLICIES[Selection(cfg.selection)](), total, costs.most(REGION), factor
    )
    return regions if kind == QueryKind.REGIONS else Alternate(timed, regions)
