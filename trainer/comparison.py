"""The comparison rows and ``mcu-cap`` wired to the config: their selections and extra losses.

``trainer/step.py`` hands every selection in :data:`SELECTIONS` to :func:`select` and adds
:func:`extra_loss` to each step's loss; the math is in :mod:`trainer.baselines`
(PixelPick, image-wise, per-image quotas), :mod:`trainer.ripu` (RIPU-PA / RA) and
:mod:`trainer.mcucap`. Group names are the wire's (``server.schemas.GROUPS``): PixelPick
asks as ``entropy`` (uncertainty sampling), image-wise as ``random`` (random images), RIPU as
``ripu``, ``mcu-cap`` as Algorithm 1's ``high`` / ``medium``.
"""

from __future__ import annotations

import torch

from trainer.baselines import (
    image_quotas,
    image_wise_select,
    margin_uncertainty,
    pixelpick_select,
)
from trainer.config import TrainConfig
from trainer.losses import entropy_loss, local_consistency_loss, negative_learning_loss
from trainer.mcucap import CapSettings, cap_select
from trainer.ripu import ripu_select, scaled_radius
from trainer.sampling import QueryWindow

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


def extra_loss(
    cfg: TrainConfig,
    main: torch.Tensor,
    source_y: torch.Tensor,
    n_src: int,
    parts: dict[str, torch.Tensor],
) -> torch.Tensor:
    """The weighted regularisers a strategy turns on, summed (a 0-dim zero when every weight
    is 0): ``minent`` (target entropy, ``entropy_weight``), RIPU's ``negative`` (target,
    ``negative_weight``, ``negative_threshold``) and ``consistency`` (source,
    ``consistency_weight``). Each weighted term goes into ``parts``, detached. ``main``:
    (Bs+Bt, C, H, W) logits, source first; ``source_y`` (Bs, H, W)."""
    terms: dict[str, torch.Tensor] = {}
    if cfg.entropy_weight > 0:
        terms["minent"] = cfg.entropy_weight * entropy_loss(main[n_src:])
    if cfg.negative_weight > 0:
        loss = negative_learning_loss(main[n_src:], cfg.negative_threshold)
        terms["negative"] = cfg.negative_weight * loss
    if cfg.consistency_weight > 0:
        loss = local_consistency_loss(main[:n_src], source_y)
        terms["consistency"] = cfg.consistency_weight * loss
    parts.update({k: v.detach() for k, v in terms.items()})
    return sum(terms.values(), main.new_zeros(()))
