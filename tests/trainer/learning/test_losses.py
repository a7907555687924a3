"""Eq. 4-6: cross-entropy, source loss, pseudo labels and the grouped (AS) loss."""

from __future__ import annotations

import math

import pytest
import torch

from trainer.learning.losses import cross_entropy, grouped_loss, source_loss


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
    # d CE / d logits = (softmax - one-hot) / 3 at each of the 3 pixels (label 1, pseudo 0, 1)
    prob = torch.tensor([[0.5, 0.8, 0.2], [0.5, 0.2, 0.8]])
    onehot = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 1.0]])
    assert torch.allclose(logits.grad.view(2, 3), (prob - onehot) / 3, atol=1e-6)


def test_grouped_loss_soft_pseudo_and_empty() -> None:
    logits = _logits()
    labels = torch.full((1, 1, 3), 255)
    soft = torch.tensor([1.0, 0.0]).view(1, 2, 1, 1).expand(1, 2, 1, 3)
    masks = {"low": torch.tensor([[[True, False, True]]])}
    loss, _ = grouped_loss(logits, labels, soft, masks)
    assert math.isclose(loss.item(), -(math.log(0.5) + math.log(0.2)) / 2, rel_tol=1e-6)
    empty = {k: torch.zeros(1, 1, 3, dtype=torch.bool) for k in ("high", "medium", "low")}
    loss, groups = grouped_loss(logits, labels, logits.detach().argmax(1), empty)
    assert loss.item() == 0.0 and loss.requires_grad
    assert all(v.item() == 0.0 for v in groups.values())


def _dense_grouped_loss(logits, labels, pseudo, masks, equal_weight=True):
    """The definition, dense over every pixel (the former implementation)."""
    import torch.nn.functional as F

    def pixel_ce(target):
        if target.dim() == logits.dim():
            return -(target.detach() * F.log_softmax(logits, dim=1)).sum(dim=1)
        return F.cross_entropy(logits, target.long(), ignore_index=255, reduction="none")

    ce_true, ce_pseudo = pixel_ce(labels), pixel_ce(pseudo)
    pseudo_ok = pseudo != 255 if pseudo.dim() == labels.dim() else True
    sums, counts = {}, {}
    for key, mask in masks.items():
        ce = ce_pseudo if key == "low" else ce_true
        sel = mask & (pseudo_ok if key == "low" else labels != 255)
        sums[key], counts[key] = ce[sel].sum(), int(sel.sum())
    means = {k: sums[k] / counts[k] for k in masks if counts[k] > 0}
    if equal_weight:
        return sum(means.values(), logits.sum() * 0.0) / max(len(means), 1)
    return sum(sums.values(), logits.sum() * 0.0) / max(sum(counts.values()), 1)


@pytest.mark.parametrize("equal_weight", [True, False])
@pytest.mark.parametrize("soft", [False, True])
@pytest.mark.parametrize("empty_low", [False, True])
def test_grouped_loss_matches_dense_definition(equal_weight, soft, empty_low) -> None:
    """The sparse (gathered pixels) loss equals the dense definition, value and gradient."""
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 6, 7, generator=g).requires_grad_()
    labels = torch.randint(5, (2, 6, 7), generator=g)
    labels[torch.rand(2, 6, 7, generator=g) < 0.6] = 255
    pseudo = (
        torch.softmax(torch.randn(2, 5, 6, 7, generator=g), 1)
        if soft
        else torch.randint(5, (2, 6, 7), generator=g)
    )
    masks = {
        "high": torch.rand(2, 6, 7, generator=g) < 0.3,
        "medium": torch.rand(2, 6, 7, generator=g) < 0.3,
        "low": torch.rand(2, 6, 7, generator=g) < (0.0 if empty_low else 0.4),
    }
    loss, parts = grouped_loss(logits, labels, pseudo, masks, equal_weight=equal_weight)
    (grad,) = torch.autograd.grad(loss, logits)
    want = _dense_grouped_loss(logits, labels, pseudo, masks, equal_weight)
    (want_grad,) = torch.autograd.grad(want, logits)
    assert torch.allclose(loss, want, atol=1e-6) and torch.allclose(grad, want_grad, atol=1e-6)
    assert set(parts) == set(masks) and (float(parts["low"]) == 0.0) == empty_low
