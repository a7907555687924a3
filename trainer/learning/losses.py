"""Segmentation losses (section III-D1, Eq. 4-6) and the comparison rows' regularisers
(MinEnt; RIPU's negative learning and local consistency).

``ignore_index=255`` marks pixels without a label everywhere in this module.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from trainer.constants import IGNORE_INDEX


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


def entropy_loss(logits: Tensor) -> Tensor:
    """Entropy minimisation (MinEnt, ADVENT's ``L_ent``): the mean normalised entropy (Eq. 2)
    of the softmax over all pixels of (N, C, H, W) logits; 0 when ``C < 2``."""
    c = logits.shape[1]
    if c < 2:
        return logits.sum() * 0.0
    logp = F.log_softmax(logits, dim=1)
    return -(logp.exp() * logp).sum(1).mean() / math.log(c)


def negative_learning_loss(logits: Tensor, threshold: float = 0.05) -> Tensor:
    """RIPU's negative learning: ``-log(1 - p)`` for every (pixel, class) with ``p < threshold``,
    averaged over those entries (0 when there are none). ``p`` is detached only in the mask."""
    prob = logits.softmax(1)
    mask = (prob < threshold).detach()
    total = -(torch.log1p(-prob.clamp(max=1 - 1e-6)) * mask).sum()
    return total / mask.sum().clamp_min(1)


def local_consistency_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """RIPU's local consistency: L1 distance between each pixel's softmax and the mean softmax
    of its 3x3 neighbourhood (edges replicated), averaged over labeled pixels whose in-image
    8-neighbours all carry the same label (off semantic boundaries). 0 when there are none.

    RIPU finds boundaries with a Laplacian of the label values (zero padding); this compares
    the labels themselves, so image borders are not boundaries and no label triple is missed.
    """
    prob = logits.softmax(1)
    mean = F.avg_pool2d(F.pad(prob, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    gap = (prob - mean).abs().sum(1)
    lab = F.pad(labels[:, None].float(), (1, 1, 1, 1), mode="replicate")
    same = F.max_pool2d(lab, 3, stride=1) == F.max_pool2d(-lab, 3, stride=1).neg()
    keep = same[:, 0] & (labels != IGNORE_INDEX)
    return (gap * keep).sum() / keep.sum().clamp_min(1)


def grouped_loss(
    logits: Tensor,
    labels: Tensor,
    pseudo: Tensor,
    masks: dict[str, Tensor],
    equal_weight: bool = True,
    max_pixels: int | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Target segmentation loss with adaptive sampling (Eq. 4 + Eq. 5).

    Args:
        logits: (N, C, H, W) main-head logits.
        labels: (N, H, W) long true labels, ``ignore_index=255`` where unlabeled.
        pseudo: (N, H, W) long hard pseudo labels, the detached argmax (Eq. 5's own
            ``softmax(p)`` as target has zero gradient), or (N, C, H, W) soft targets.
        masks: ``{"high", "medium", "low"}`` -> (N, H, W) bool from
            :func:`trainer.selection.sampling.adaptive_sample`; "high"/"medium" use ``labels``
            (pixels labeled 255 are dropped), "low" uses ``pseudo``.
        equal_weight: True (AS): the mean CE of each non-empty group, then the mean
            over those groups, so a few true labels weigh as much as many pseudo labels.
            False (AL w/o AS): one plain mean over all selected pixels.

    Returns:
        ``(loss, per_group)``: scalar loss (0 attached to ``logits`` when every group is
        empty) and the detached mean CE of each group in ``masks`` (0 when empty).

    Only the selected pixels are gathered, as (K, C), for the log-softmax (the backward writes
    K rows, not an (N, C, H, W) softmax gradient): their ``nonzero`` is a host sync, unless
    ``max_pixels`` (a host bound of K) gives the gather a fixed size."""
    n, c = logits.shape[:2]
    soft = pseudo.dim() == logits.dim()
    true_ok = labels != IGNORE_INDEX
    sels = {
        key: (mask if soft else mask & (pseudo != IGNORE_INDEX)) if key == "low" else mask & true_ok
        for key, mask in masks.items()
    }
    if not sels:
        return logits.sum() * 0.0, {}
    union = torch.stack(list(sels.values())).any(0).reshape(n, -1)
    b, p, used = _selected(union, max_pixels)
    logp = F.log_softmax(logits.flatten(2)[b, :, p], dim=1)  # (K, C)
    zero = logp.sum() * 0.0

    def hard_ce(target: Tensor) -> Tensor:  # (K,) CE against hard labels at the gathered pixels
        return -logp.gather(1, target.reshape(n, -1)[b, p].long().clamp(0, c - 1)[:, None])[:, 0]

    ce_true = hard_ce(labels)
    if soft:
        ce_pseudo = -(pseudo.flatten(2)[b, :, p].detach().to(logp.dtype) * logp).sum(1)
    else:
        ce_pseudo = hard_ce(pseudo)
    keys = list(sels)
    sums, counts = [], []
    for key in keys:
        w = sels[key].reshape(n, -1)[b, p] & used
        sums.append(torch.where(w, ce_pseudo if key == "low" else ce_true, 0.0).sum())
        counts.append(w.sum())
    means, mean_loss = _group_means(torch.stack(sums), torch.stack(counts), equal_weight)
    detached = means.detach()
    return zero + mean_loss, {k: detached[i] for i, k in enumerate(keys)}


def _selected(union: Tensor, max_pixels: int | None) -> tuple[Tensor, Tensor, Tensor]:
    """Rows and columns of the True items of ``union`` (N, P), and which of them are used: all
    (a host sync), or ``max_pixels`` slots (no sync; the unused ones point at the last item)."""
    if max_pixels is None:
        b, p = union.nonzero(as_tuple=True)
        return b, p, torch.ones_like(b, dtype=torch.bool)
    n = union.numel()
    flat = torch.nonzero_static(union.reshape(-1), size=min(max_pixels, n), fill_value=n)[:, 0]
    used = flat < n
    flat = flat.clamp(max=max(n - 1, 0))
    return torch.div(flat, union.shape[1], rounding_mode="floor"), flat % union.shape[1], used


def _group_means(sum_t: Tensor, counts: Tensor, equal_weight: bool) -> tuple[Tensor, Tensor]:
    """Per-group mean CE (0 for an empty group) and the loss: the mean over the non-empty
    groups (``equal_weight``) or the mean over all pixels."""
    count_t = counts.to(sum_t.dtype)
    means = sum_t / count_t.clamp_min(1.0)
    if equal_weight:
        present = (count_t > 0).to(sum_t.dtype)
        return means, (means * present).sum() / present.sum().clamp_min(1.0)
    return means, sum_t.sum() / count_t.sum().clamp_min(1.0)
