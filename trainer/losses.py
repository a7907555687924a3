"""Segmentation losses (section III-D1, Eq. 4-6).

``ignore_index=255`` marks pixels without a label everywhere in this module.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

IGNORE_INDEX = 255


def cross_entropy(logits: Tensor, target: Tensor, ignore_index: int = IGNORE_INDEX) -> Tensor:
    """Mean cross-entropy over the labeled pixels.

    Args:
        logits: (N, C, H, W).
        target: (N, H, W) long, ``ignore_index=255`` skipped.

    Returns:
        Scalar; 0 (attached to ``logits``) when no pixel is labeled, never NaN.
    """
    total = F.cross_entropy(logits, target.long(), ignore_index=ignore_index, reduction="sum")
    count = (target != ignore_index).sum().clamp_min(1)
    return total / count


def source_loss(main: Tensor, aux: Tensor, target: Tensor, aux_weight: float = 0.5) -> Tensor:
    """Source loss ``CE(main) + aux_weight * CE(aux)`` (Eq. 6, third term; torchvision style).

    ``main``/``aux`` are (N, C, H, W) logits at the label's size, ``target`` (N, H, W)
    with ``ignore_index=255``.
    """
    return cross_entropy(main, target) + aux_weight * cross_entropy(aux, target)


def pseudo_labels(logits: Tensor) -> Tensor:
    """Hard pseudo labels ``argmax softmax(p)`` (Eq. 5), detached: (N, C, H, W) -> (N, H, W).

    The paper writes ``y~ = softmax(p)``; a soft target equal to the model's own
    prediction gives a zero gradient (``d CE / d logits = softmax - target = 0``), so
    the hard argmax is used. Soft targets from another model can be passed to
    :func:`grouped_loss` as probabilities.
    """
    return logits.detach().argmax(dim=1)


def _pixel_ce(logits: Tensor, target: Tensor) -> Tensor:
    """(N, H, W) per-pixel CE; ``target`` is (N, H, W) long or (N, C, H, W) probabilities."""
    if target.dim() == logits.dim():
        return -(target.detach().to(logits.dtype) * F.log_softmax(logits, dim=1)).sum(dim=1)
    return F.cross_entropy(logits, target.long(), ignore_index=IGNORE_INDEX, reduction="none")


def grouped_loss(
    logits: Tensor,
    labels: Tensor,
    pseudo: Tensor,
    masks: dict[str, Tensor],
    equal_weight: bool = True,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Target segmentation loss with adaptive sampling (Eq. 4 + Eq. 5).

    Args:
        logits: (N, C, H, W) main-head logits.
        labels: (N, H, W) long true labels, ``ignore_index=255`` where unlabeled.
        pseudo: (N, H, W) long hard pseudo labels (:func:`pseudo_labels`) or
            (N, C, H, W) soft targets.
        masks: ``{"high", "medium", "low"}`` -> (N, H, W) bool from
            :func:`trainer.sampling.adaptive_sample`; "high"/"medium" use ``labels``
            (pixels labeled 255 are dropped), "low" uses ``pseudo``.
        equal_weight: True (AS): the mean CE of each non-empty group, then the mean
            over those groups, so a few true labels weigh as much as many pseudo labels.
            False (AL w/o AS): one plain mean over all selected pixels.

    Returns:
        ``(loss, per_group)``: scalar loss (0 attached to ``logits`` when every group is
        empty) and the detached mean CE of each group in ``masks`` (0 when empty).
    """
    ce_true = _pixel_ce(logits, labels)
    ce_pseudo = _pixel_ce(logits, pseudo)
    zero = logits.sum() * 0.0
    sums: dict[str, Tensor] = {}
    counts: dict[str, int] = {}
    pseudo_ok = pseudo != IGNORE_INDEX if pseudo.dim() == labels.dim() else True
    for key, mask in masks.items():
        ce = ce_pseudo if key == "low" else ce_true
        sel = mask & (pseudo_ok if key == "low" else labels != IGNORE_INDEX)
        sums[key], counts[key] = ce[sel].sum(), int(sel.sum())
    means = {k: sums[k] / counts[k] for k in masks if counts[k] > 0}
    if equal_weight:
        loss = sum(means.values(), zero) / max(len(means), 1)
    else:
        loss = sum(sums.values(), zero) / max(sum(counts.values()), 1)
    per_group = {k: means[k].detach() if k in means else zero.detach() for k in masks}
    return loss, per_group
