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

from trainer.config import Selection, TrainConfig
from trainer.ops.draws import top_k_select, uniform_select
from trainer.selection.comparison import ImageWise, PixelPick, Ripu
from trainer.selection.mcucap import CapSettings, McuCap
from trainer.selection.ripu import pa_score
from trainer.selection.sampling import ActiveSampler
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


def make_policy(cfg: TrainConfig, sampler: ActiveSampler) -> Policy:
    """The policy of ``cfg.selection``; ``sampler`` holds the run's Algorithm 1 thresholds."""
    return POLICIES[Selection(cfg.selection)](cfg, sampler)
