"""The comparison rows and ``mcu-cap`` wired to the config: their selections.

``trainer/loop/step.py`` hands every selection in :data:`SELECTIONS` to :func:`select` (their
extra losses are :func:`trainer.learning.regularisers.extra_loss`); the math is in
:mod:`trainer.selection.baselines` (PixelPick, image-wise, per-image quotas),
:mod:`trainer.selection.ripu` (RIPU-PA / RA) and :mod:`trainer.selection.mcucap`. Group names
are the wire's (``server.schemas.GROUPS``): PixelPick asks as ``entropy`` (uncertainty
sampling), image-wise as ``random`` (random images), RIPU as ``ripu``, ``mcu-cap`` as
Algorithm 1's ``high`` / ``medium``.
"""

from __future__ import annotations

import torch

from trainer.config import TrainConfig
from trainer.selection.baselines import (
    image_quotas,
    image_wise_select,
    margin_uncertainty,
    pixelpick_select,
)
from trainer.selection.mcucap import CapSettings, cap_select
from trainer.selection.ripu import ripu_select, scaled_radius
from trainer.selection.sampling import QueryWindow

SELECTIONS = ("pixelpick", "ripu-pa", "ripu-ra", "image-wise", "mcu-cap")


def select(
    cfg: TrainConfig,
    window: QueryWindow,
    iteration: int,
    score: torch.Tensor,
    groups: torch.Tensor,
    prob: torch.Tensor,
    unasked: torch.Tensor,
    spent: dict[str, int],
    generator: torch.Generator,
) -> tuple[torch.Tensor, str]:
    """Pixels of the target batch to ask about for ``cfg.selection`` in :data:`SELECTIONS`:
    (N,H,W) bool and the group name. Nothing after the query window."""
    if iteration >= window.query_until:
        return torch.zeros_like(unasked), "none"
    total = sum(spent.values())
    n, h, w = unasked.shape
    if cfg.selection == "image-wise":
        elapsed = (iteration + 1) / window.query_until
        return image_wise_select(unasked, total, window.expected, elapsed, generator), "random"
    if cfg.selection == "mcu-cap":
        settings = CapSettings(cfg.cap_class_share, cfg.cap_impurity, cfg.cap_radius_k)
        return cap_select(
            settings, window, iteration, score, groups, prob, unasked, spent, generator
        )
    quotas = image_quotas(window.expected - total, window.query_until - iteration, n)
    if cfg.selection == "pixelpick":
        uncertainty = margin_uncertainty(prob)
        mask = pixelpick_select(uncertainty, unasked, quotas, cfg.pixelpick_top, generator)
        return mask, "entropy"
    if cfg.selection not in ("ripu-pa", "ripu-ra"):
        raise ValueError(f"selection {cfg.selection!r} is not one of {SELECTIONS}")
    regions = cfg.selection == "ripu-ra"
    radius = scaled_radius(cfg.ripu_region_k if regions else cfg.ripu_radius_k, h, w)
    return ripu_select(prob, unasked, quotas, radius, regions), "ripu"
