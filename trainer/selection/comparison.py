"""The comparison rows as policies: PixelPick, image-wise and RIPU-PA / RA.

The math is in :mod:`trainer.selection.baselines` (PixelPick, image-wise, per-image quotas) and
:mod:`trainer.selection.ripu`; their extra losses are :func:`trainer.learning.regularisers.
extra_loss`. The registry (:mod:`trainer.selection.policy`) builds them from the config. Group
names are the wire's (``server.schemas.GROUPS``): PixelPick asks as ``entropy`` (uncertainty
sampling), image-wise as ``random`` (random images), RIPU as ``ripu``.
"""

from __future__ import annotations

import torch

from trainer.selection.baselines import (
    image_quotas,
    image_wise_select,
    margin_uncertainty,
    pixelpick_select,
)
from trainer.selection.ripu import ripu_select, scaled_radius
from trainer.selection.views import BudgetView, Picked, Policy, ScoreMaps


def image_shares(budget: BudgetView, images: int) -> torch.Tensor:
    """(images,) long pixels per batch image: the budget left spread evenly over the image
    visits left in the window (:func:`image_quotas`), the batch within the view's cap."""
    if budget.window is None:
        return image_quotas(budget.capped(max(0, budget.left)), 1, images)
    quotas = image_quotas(budget.left, budget.iterations_left(), images)
    if budget.cap is None:
        return quotas
    return (quotas - (torch.cumsum(quotas, 0) - budget.cap).clamp(min=0)).clamp(min=0)


class PixelPick(Policy):
    """PixelPick: per image its share, uniformly among its ``top`` most uncertain pixels
    (margin sampling)."""

    def __init__(self, top: float) -> None:
        self.top = top

    def pick(
        self, maps: ScoreMaps, budget: BudgetView, generator: torch.Generator | None
    ) -> Picked:
        quotas = image_shares(budget, maps.unasked.shape[0])
        uncertainty = margin_uncertainty(maps.prob)
        return Picked(
            pixelpick_select(uncertainty, maps.unasked, quotas, self.top, generator), "entropy"
        )


class ImageWise(Policy):
    """Whole images while the run is behind M_e times the share of the window elapsed."""

    def pick(
        self, maps: ScoreMaps, budget: BudgetView, generator: torch.Generator | None
    ) -> Picked:
        total, expected = budget.total, budget.expected
        if budget.cap is not None:  # the image that would pass the cap is cut at it
            expected = min(expected, total + budget.cap)
        mask = image_wise_select(maps.unasked, total, expected, budget.elapsed(), generator)
        return Picked(mask, "random")


class Ripu(Policy):
    """RIPU-PA (``regions=False``: blank K around each pick) or RIPU-RA (label K around each
    pick); ``radius_k`` is their K at 1280x640, scaled to the image (:func:`scaled_radius`)."""

    def __init__(self, radius_k: float, regions: bool) -> None:
        self.radius_k, self.regions = radius_k, regions

    def pick(
        self, maps: ScoreMaps, budget: BudgetView, generator: torch.Generator | None
    ) -> Picked:
        n, h, w = maps.unasked.shape
        radius = scaled_radius(self.radius_k, h, w)
        quotas = image_shares(budget, n)
        return Picked(ripu_select(maps.prob, maps.unasked, quotas, radius, self.regions), "ripu")
