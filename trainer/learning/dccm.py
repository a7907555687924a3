"""Dynamic Categories Correlation Matrix, DCCM (section III-D2, Eq. 7-8).

``W[u, v]`` tracks how often pixels of class ``u`` are predicted as ``v``. It is
computed on labeled pixels only (source ground truth and queried target pixels);
``ignore_index=255`` marks pixels without a label.
"""

from __future__ import annotations

import torch
from torch import Tensor

from trainer.constants import IGNORE_INDEX
from trainer.ops.draws import count_ids


def confusion_rates(
    pred: Tensor, target: Tensor, num_classes: int, ignore_index: int = IGNORE_INDEX
) -> tuple[Tensor, Tensor]:
    """Error rates ``R[u, v] = M(u -> v) / M(u)`` of one iteration (Eq. 7).

    Args:
        pred: (P,) long predicted classes (any shape; flattened).
        target: (P,) long true classes, ``ignore_index=255`` skipped, as is any pixel
            whose target or prediction is outside ``[0, C)``.
        num_classes: ``C``.
        ignore_index: label of unlabeled pixels.

    Returns:
        ``(rates, observed)``: (C, C) float32 rates with a zero diagonal (only
        misclassifications count) and zero rows for classes with no pixel, and (C,)
        bool, the rows observed this iteration (``M(u) > 0``); pass it to
        :func:`update_dccm` so that unseen classes keep their history.
    """
    pred, target = pred.reshape(-1).long(), target.reshape(-1).long()
    ok = (target != ignore_index) & (target >= 0) & (target < num_classes)
    ok &= (pred >= 0) & (pred < num_classes)
    cells = num_classes * num_classes
    cell = torch.where(ok, target * num_classes + pred, cells)  # cells: not counted
    counts = count_ids(cell, cells + 1)[:cells]  # no boolean indexing: no host sync on a GPU
    counts = counts.view(num_classes, num_classes).float()
    totals = counts.sum(1)
    counts.fill_diagonal_(0.0)
    observed = totals > 0
    rates = counts / totals.clamp_min(1.0)[:, None]
    return rates, observed


def update_dccm(w: Tensor, rates: Tensor, beta: float, observed: Tensor | None = None) -> Tensor:
    """EMA step ``w = beta * w + (1 - beta) * R`` (Eq. 8).

    Args:
        w: (C, C) current DCCM.
        rates: (C, C) error rates of this iteration (:func:`confusion_rates`).
        beta: momentum in [0, 1].
        observed: optional (C,) bool; rows not observed keep their old value (a class
            absent from the batch says nothing about its confusions). ``None``
            updates every row.

    Returns:
        (C, C) new matrix (``w`` itself is not modified).
    """
    new = beta * w + (1.0 - beta) * rates.to(w.dtype)
    if observed is None:
        return new
    return torch.where(observed.to(w.device)[:, None], new, w)


def dccm_step(
    w: Tensor, pred: Tensor, target: Tensor, beta: float, freeze_absent: bool = True
) -> Tensor:
    """One iteration's DCCM update (Algorithm 1 line 14): Eq. 7 on the batch, then Eq. 8.

    ``freeze_absent`` (``TrainConfig.dccm_freeze_absent``, ours): the row of a class with no
    labeled pixel in the batch keeps its value. ``False``, Eq. 8 as printed: every element is
    updated, so such a row decays by ``beta`` toward its zero rate.
    """
    rates, observed = confusion_rates(pred, target, w.shape[0])
    return update_dccm(w, rates.to(w.device), beta, observed if freeze_absent else None)
