"""Eq. 4-6: cross-entropy, source loss, pseudo labels and the grouped (AS) loss."""

from __future__ import annotations

import math

import torch

from trainer.losses import cross_entropy, grouped_loss, pseudo_labels, source_loss


def _logits() -> torch.Tensor:
    """(1, 2, 1, 3): pixel probabilities of class 0 are 0.5, 0.8, 0.2."""
    p0 = torch.tensor([0.5, 0.8, 0.2])
    return torch.stack([p0.log(), (1 - p0).log()]).view(1, 2, 1, 3).requires_grad_()


def test_cross_entropy_by_hand_with_ignore() -> None:
    target = torch.tensor([[[0, 1, 255]]])
    expected = -(math.log(0.5) + math.log(0.2)) / 2
    assert math.isclose(cross_entropy(_logits(), target).item(), expected, rel_tol=1e-6)


def test_cross_entropy_all_ignored_is_zero_with_grad() -> None:
    logits = _logits()
    loss = cross_entropy(logits, torch.full((1, 1, 3), 255))
    loss.backward()
    assert loss.item() == 0.0 and torch.equal(logits.grad, torch.zeros_like(logits))


def test_source_loss_adds_half_aux() -> None:
    target = torch.tensor([[[0, 0, 0]]])
    main, aux = _logits(), torch.zeros(1, 2, 1, 3)
    expected = -(math.log(0.5) + math.log(0.8) + math.log(0.2)) / 3 + 0.5 * math.log(2)
    assert math.isclose(source_loss(main, aux, target).item(), expected, rel_tol=1e-6)


def test_pseudo_labels_argmax_detached() -> None:
    labels = pseudo_labels(_logits())
    assert labels.tolist() == [[[0, 0, 1]]] and not labels.requires_grad


def test_grouped_loss_equal_weight_vs_plain_mean() -> None:
    logits = _logits()
    labels = torch.tensor([[[1, 255, 255]]])
    pseudo = torch.tensor([[[0, 0, 1]]])
    masks = {
        "high": torch.tensor([[[True, False, False]]]),
        "medium": torch.zeros(1, 1, 3, dtype=torch.bool),
        "low": torch.tensor([[[False, True, True]]]),
    }
    high = -math.log(0.5)
    low = -(math.log(0.8) + math.log(0.8)) / 2
    loss, groups = grouped_loss(logits, labels, pseudo, masks)
    assert math.isclose(loss.item(), (high + low) / 2, rel_tol=1e-6)
    assert math.isclose(groups["high"].item(), high, rel_tol=1e-6)
    assert groups["medium"].item() == 0.0 and set(groups) == {"high", "medium", "low"}
    plain, _ = grouped_loss(logits, labels, pseudo, masks, equal_weight=False)
    assert math.isclose(plain.item(), (high + 2 * low) / 3, rel_tol=1e-6)
    plain.backward()
    assert logits.grad.abs().sum() > 0


def test_grouped_loss_soft_pseudo_and_empty() -> None:
    logits = _logits()
    labels = torch.full((1, 1, 3), 255)
    soft = torch.tensor([1.0, 0.0]).view(1, 2, 1, 1).expand(1, 2, 1, 3)
    masks = {"low": torch.tensor([[[True, False, True]]])}
    loss, _ = grouped_loss(logits, labels, soft, masks)
    assert math.isclose(loss.item(), -(math.log(0.5) + math.log(0.2)) / 2, rel_tol=1e-6)
    empty = {k: torch.zeros(1, 1, 3, dtype=torch.bool) for k in ("high", "medium", "low")}
    loss, groups = grouped_loss(logits, labels, pseudo_labels(logits), empty)
    assert loss.item() == 0.0 and loss.requires_grad
    assert all(v.item() == 0.0 for v in groups.values())
