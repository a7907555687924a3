"""Confusion matrix, IoU and mIoU against direct loop computations."""

from __future__ import annotations

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from trainer.learning.metrics import ConfusionMatrix, confusion_matrix, iou_from_confusion


def _loop_miou(pred: torch.Tensor, target: torch.Tensor, c: int) -> float:
    ious = []
    p, t = pred.flatten().tolist(), target.flatten().tolist()
    for k in range(c):
        inter = sum(1 for a, b in zip(p, t, strict=True) if b != 255 and a == k and b == k)
        union = sum(1 for a, b in zip(p, t, strict=True) if b != 255 and (a == k or b == k))
        if union:
            ious.append(inter / union)
    return 100 * sum(ious) / len(ious) if ious else float("nan")


def test_confusion_matrix_by_hand() -> None:
    target = torch.tensor([[0, 0, 1, 255], [2, 1, 1, 0]])
    pred = torch.tensor([[0, 1, 1, 2], [2, 0, 1, 0]])
    cm = confusion_matrix(pred, target, 4)
    expected = [[2, 1, 0, 0], [1, 2, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]]
    assert cm.dtype == torch.int64 and cm.tolist() == expected
    iou = iou_from_confusion(cm)
    assert math.isclose(iou[0].item(), 2 / 4) and math.isclose(iou[1].item(), 2 / 4)
    assert iou[2].item() == 1.0 and math.isnan(iou[3].item())


def test_per_class_iou_in_percent_rounded_none_when_absent() -> None:
    cm = ConfusionMatrix(4)
    cm.update(torch.tensor([0, 1, 1, 0, 0, 2]), torch.tensor([0, 0, 1, 1, 2, 2]))
    # class 0: 1 / 4, class 1: 1 / 3, class 2: 1 / 2, class 3: absent from both
    assert cm.per_class_iou() == [25.0, 33.33, 50.0, None]


def test_class_counts_and_reset_merge() -> None:
    a, b = ConfusionMatrix(3), ConfusionMatrix(3)
    a.update(torch.tensor([0, 1, 2]), torch.tensor([0, 1, 1]))
    b.update(torch.tensor([2]), torch.tensor([2]))
    a += b
    assert int(a.mat.sum()) == 4
    assert math.isclose(a.pixel_accuracy(), 75.0)
    assert math.isclose(a.miou(), 100 * (1 + 0.5 + 0.5) / 3)
    a.reset()
    assert int(a.mat.sum()) == 0 and math.isnan(a.miou()) and math.isnan(a.pixel_accuracy())


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), c=st.integers(2, 6), batches=st.integers(1, 3))
def test_miou_equals_loops(seed: int, c: int, batches: int) -> None:
    g = torch.Generator().manual_seed(seed)
    meter = ConfusionMatrix(c)
    preds, targets = [], []
    for _ in range(batches):
        target = torch.randint(0, c + 1, (2, 4, 5), generator=g)
        target[target == c] = 255
        pred = torch.randint(0, c, (2, 4, 5), generator=g)
        meter.update(pred, target)
        preds.append(pred)
        targets.append(target)
    expected = _loop_miou(torch.cat(preds), torch.cat(targets), c)
    got = meter.miou()
    assert (math.isnan(got) and math.isnan(expected)) or math.isclose(got, expected, rel_tol=1e-9)
