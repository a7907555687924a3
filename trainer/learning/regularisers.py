"""The regularisers the comparison rows turn on: MinEnt's target entropy, RIPU's negative
learning (target) and local consistency (source), weighted by the config and summed."""

from __future__ import annotations

import torch

from trainer.config import TrainConfig
from trainer.learning.losses import entropy_loss, local_consistency_loss, negative_learning_loss


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
