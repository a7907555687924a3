"""MinEnt and RIPU's negative-learning and local-consistency losses on hand-computed tensors."""

from __future__ import annotations

import math

import torch

from trainer.learning.losses import entropy_loss, local_consistency_loss, negative_learning_loss


def test_entropy_loss_is_one_for_uniform_and_zero_for_sure_predictions() -> None:
    assert torch.isclose(entropy_loss(torch.zeros(2, 4, 3, 3)), torch.tensor(1.0))
    sure = torch.full((1, 3, 2, 2), -50.0)
    sure[:, 0] = 50.0
    assert entropy_loss(sure).item() < 1e-6
    # two pixels, logits (a, 0) and (0, 0): dH/da = -a p (1 - p) / log 2 (Eq. 2 normalised),
    # halved by the mean over 2 pixels; the uniform pixel is a stationary point
    a, p = 1.5, 1 / (1 + math.exp(-1.5))
    logits = torch.zeros(1, 2, 1, 2)
    logits[0, 0, 0, 0] = a
    logits.requires_grad_(True)
    entropy_loss(logits).backward()
    g = -a * p * (1 - p) / math.log(2) / 2
    assert torch.allclose(logits.grad[0, :, 0], torch.tensor([[g, 0.0], [-g, 0.0]]), atol=1e-6)


def test_negative_learning_averages_over_the_unlikely_classes() -> None:
    # one pixel, probabilities 0.9 / 0.06 / 0.04: only the last is below 0.05
    logits = torch.tensor([0.9, 0.06, 0.04]).log().view(1, 3, 1, 1)
    assert torch.isclose(negative_learning_loss(logits, 0.05), torch.tensor(-math.log(0.96)))
    assert negative_learning_loss(torch.zeros(1, 2, 2, 2), 0.05).item() == 0.0  # none below


def test_local_consistency_counts_labeled_pixels_off_label_boundaries() -> None:
    labels = torch.zeros(1, 4, 4, dtype=torch.long)
    labels[0, :, 3] = 1  # a boundary between columns 2 and 3
    labels[0, 0, 0] = 255
    logits = torch.zeros(1, 2, 4, 4)
    logits[0, 0, 1, 0] = 3.0  # one pixel differs from its neighbours
    loss = local_consistency_loss(logits, labels)
    prob = logits.softmax(1)
    mean = torch.nn.functional.avg_pool2d(
        torch.nn.functional.pad(prob, (1, 1, 1, 1), mode="replicate"), 3, stride=1
    )
    gap = (prob - mean).abs().sum(1)[0]
    # kept: columns 0-1 off the boundary, minus (0,0) (ignored) and its neighbours (next to
    # 255); column 3's pixels have a column-2 neighbour of another label, so none of them
    keep = torch.zeros(4, 4, dtype=torch.bool)
    keep[2:, :2] = True
    keep[1, :2] = False
    assert torch.isclose(loss, gap[keep].mean())
    assert local_consistency_loss(torch.zeros(1, 2, 4, 4), labels).item() == 0.0
