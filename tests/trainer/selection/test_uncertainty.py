"""Eq. 1-3 (Eq. 3 is the KL term of the score) and the group partition, by hand and invariants."""

from __future__ import annotations

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from trainer.constants import Group
from trainer.selection.uncertainty import (
    entropy,
    partition,
    uncertainty_score,
)


def _pixel(values: list[float]) -> torch.Tensor:
    """(1, C, 1, 1) tensor from C values."""
    return torch.tensor(values, dtype=torch.float64).view(1, -1, 1, 1)


def test_entropy_uniform_is_one_and_one_hot_is_zero() -> None:
    assert torch.allclose(entropy(torch.full((2, 5, 3, 4), 0.2)), torch.ones(2, 3, 4))
    one_hot = torch.nn.functional.one_hot(torch.randint(0, 5, (2, 3, 4)), 5)
    assert torch.equal(entropy(one_hot.permute(0, 3, 1, 2).float()), torch.zeros(2, 3, 4))


def test_entropy_by_hand() -> None:
    p = [0.5, 0.25, 0.25]
    expected = -sum(x * math.log(x) for x in p) / math.log(3)
    assert math.isclose(entropy(_pixel(p)).item(), expected, rel_tol=1e-12)


def test_entropy_equals_the_class_dim_sum_with_underflowed_probabilities() -> None:
    """One class at a time equals xlogy summed over the class dim, where some probabilities
    are exactly 0 (0 log 0 = 0, not nan), and in float32 and float64."""
    g = torch.Generator().manual_seed(0)
    for dtype in (torch.float32, torch.float64):
        logits = torch.randn(2, 7, 5, 6, generator=g, dtype=dtype) * 3
        logits[0, :3, 1] = -1e4  # softmax underflows to exactly 0 there
        prob = logits.softmax(1)
        assert bool((prob == 0).any())
        reference = -torch.xlogy(prob, prob).sum(1) / math.log(7)
        got = entropy(prob)
        assert got.dtype == dtype and not bool(got.isnan().any())
        assert torch.allclose(got, reference, rtol=1e-6, atol=1e-7)


def test_uncertainty_score_by_hand() -> None:
    main = _pixel([math.log(0.8), math.log(0.2)])
    aux = _pixel([0.0, 0.0])
    ent = -(0.8 * math.log(0.8) + 0.2 * math.log(0.2)) / math.log(2)
    kl = 0.8 * math.log(0.8 / 0.5) + 0.2 * math.log(0.2 / 0.5)
    assert math.isclose(uncertainty_score(main, aux).item(), ent + 0.5 * kl, rel_tol=1e-9)
    assert math.isclose(uncertainty_score(main, aux, gamma=0.0).item(), ent, rel_tol=1e-9)


def test_uncertainty_score_saturated_logits_by_hand() -> None:
    # p = (1, 0, 0): E = 0; KL(p || q) = log p_0 - log q_0 = 0 - (-2e4) (log-softmax, Eq. 1),
    # so S = 0.5 * 2e4 exactly; probabilities clamped before the log would give ~9, not 1e4
    main = _pixel([1e4, -1e4, 0.0]).float()
    aux = _pixel([-1e4, 1e4, 0.0]).float()
    assert math.isclose(uncertainty_score(main, aux).item(), 1e4, rel_tol=1e-6)


def test_partition_thresholds() -> None:
    score = torch.tensor([[[0.01, 0.05, 0.5, 0.9, 0.95, 1.3]]])
    groups = partition(score, pi_high=0.9, pi_low=0.05)
    expected = [Group.LOW, Group.MEDIUM, Group.MEDIUM, Group.MEDIUM, Group.HIGH, Group.HIGH]
    assert groups.tolist() == [[expected]]


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    lo=st.floats(0.0, 1.0),
    span=st.floats(0.0, 1.0),
)
def test_every_pixel_in_exactly_one_group(seed: int, lo: float, span: float) -> None:
    g = torch.Generator().manual_seed(seed)
    main, aux = torch.randn(2, 4, 5, 6, generator=g), torch.randn(2, 4, 5, 6, generator=g)
    score = uncertainty_score(main, aux)
    groups = partition(score, pi_high=lo + span, pi_low=lo)
    members = [(groups == k) for k in (Group.LOW, Group.MEDIUM, Group.HIGH)]
    assert torch.equal(sum(m.long() for m in members), torch.ones_like(score, dtype=torch.long))
    assert (score[members[2]] > lo + span).all() and (score[members[0]] < lo).all()
    assert (entropy(torch.softmax(main, 1)) <= 1 + 1e-6).all()
