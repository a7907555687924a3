"""Segmentation metrics: confusion matrix, IoU, mIoU (torchvision references style).

``ignore_index=255`` pixels never enter the confusion matrix.
"""

from __future__ import annotations

import torch
from torch import Tensor

from trainer.constants import IGNORE_INDEX


def confusion_matrix(
    pred: Tensor, target: Tensor, num_classes: int, ignore_index: int = IGNORE_INDEX
) -> Tensor:
    """(C, C) int64 counts, rows = target class, columns = predicted class.

    Args:
        pred: (N, ...) long predictions.
        target: (N, ...) long labels of the same shape; ``ignore_index=255`` and any
            value outside ``[0, C)`` are skipped, as are predictions outside ``[0, C)``.
        num_classes: ``C``.
    """
    pred, target = pred.reshape(-1).long(), target.reshape(-1).long()
    ok = (target != ignore_index) & (target >= 0) & (target < num_classes)
    ok &= (pred >= 0) & (pred < num_classes)
    flat = target[ok] * num_classes + pred[ok]
    counts = torch.bincount(flat, minlength=num_classes * num_classes)
    return counts.view(num_classes, num_classes)


def iou_from_confusion(cm: Tensor) -> Tensor:
    """(C,) float64 IoU ``TP / (TP + FP + FN)``; NaN for classes absent from both."""
    cm = cm.double()
    tp = cm.diagonal()
    union = cm.sum(dim=0) + cm.sum(dim=1) - tp
    return torch.where(union > 0, tp / union.clamp_min(1.0), torch.full_like(tp, float("nan")))


class ConfusionMatrix:
    """Accumulates a (C, C) int64 confusion matrix on the CPU over an evaluation."""

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.mat = torch.zeros(num_classes, num_classes, dtype=torch.int64)

    def update(self, pred: Tensor, target: Tensor) -> None:
        """Add a batch: ``pred`` and ``target`` (N, ...) long, ``ignore_index=255`` skipped."""
        cm = confusion_matrix(pred, target, self.num_classes, self.ignore_index)
        self.mat += cm.cpu()

    def merge(self, other: ConfusionMatrix) -> ConfusionMatrix:
        """Add ``other``'s counts into this matrix (e.g. from another worker); returns self."""
        if other.num_classes != self.num_classes:
            raise ValueError("cannot merge confusion matrices of different class counts")
        self.mat += other.mat
        return self

    def __iadd__(self, other: ConfusionMatrix) -> ConfusionMatrix:
        return self.merge(other)

    def reset(self) -> None:
        """Zero all counts."""
        self.mat.zero_()

    def iou(self) -> Tensor:
        """(C,) IoU in [0, 1], NaN for classes absent from both target and prediction."""
        return iou_from_confusion(self.mat)

    def per_class_iou(self) -> list[float | None]:
        """IoU per class in percent, rounded to 2 decimals; None for a class absent from both
        target and prediction (the form every report and the service's metrics take)."""
        return [None if v != v else round(100 * v, 2) for v in self.iou().tolist()]

    def miou(self) -> float:
        """Mean IoU in percent over classes that are not NaN (NaN if none is)."""
        iou = self.iou()
        if torch.isnan(iou).all():
            return float("nan")
        return float(torch.nanmean(iou) * 100.0)

    def pixel_accuracy(self) -> float:
        """Correct / labeled pixels, in percent (NaN when nothing was counted)."""
        total = int(self.mat.sum())
        if total == 0:
            return float("nan")
        return 100.0 * float(self.mat.diagonal().sum()) / total


def query_errors(mask: Tensor, labels: Tensor, pred: Tensor) -> int:
    """Answered pixels of ``mask`` (B, H, W) bool where ``pred`` (the model at query time) is
    not the label; ``labels`` (B, H, W) with ``ignore_index=255`` where no answer came."""
    return int((mask & (labels != IGNORE_INDEX) & (pred != labels)).sum())
