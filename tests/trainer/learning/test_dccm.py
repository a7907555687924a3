"""Eq. 7-8: confusion rates and the EMA update."""

from __future__ import annotations

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from trainer.learning.dccm import confusion_rates, update_dccm


def test_confusion_rates_by_hand() -> None:
    target = torch.tensor([0, 0, 0, 0, 1, 1, 255, 2])
    pred = torch.tensor([0, 1, 1, 2, 1, 0, 2, 2])
    rates, observed = confusion_rates(pred, target, num_classes=4)
    expected = torch.tensor(
        [
            [0.0, 2 / 4, 1 / 4, 0.0],
            [1 / 2, 0.0, 0.0, 0.0],
            [0.0, 0.0, 0.0, 0.0],
            [0.0, 0.0, 0.0, 0.0],
        ]
    )
    assert torch.allclose(rates, expected)
    assert observed.tolist() == [True, True, True, False]


def test_confusion_rates_accepts_maps() -> None:
    target = torch.tensor([[[0, 1], [255, 1]]])
    pred = torch.tensor([[[1, 1], [0, 0]]])
    rates, observed = confusion_rates(pred, target, 2)
    assert torch.allclose(rates, torch.tensor([[0.0, 1.0], [0.5, 0.0]]))
    assert observed.all()


def test_update_dccm_ema_step_and_unobserved_rows() -> None:
    w = torch.tensor([[0.0, 0.4], [0.2, 0.0]])
    r = torch.tensor([[0.0, 1.0], [0.6, 0.0]])
    new = update_dccm(w, r, beta=0.9)
    assert torch.allclose(new, torch.tensor([[0.0, 0.46], [0.24, 0.0]]))
    kept = update_dccm(w, r, 0.9, observed=torch.tensor([True, False]))
    assert torch.allclose(kept, torch.tensor([[0.0, 0.46], [0.2, 0.0]]))
    assert torch.equal(w, torch.tensor([[0.0, 0.4], [0.2, 0.0]]))  # not modified in place


def _rates_by_counting(pred: list[int], target: list[int], c: int) -> list[list[float]]:
    """Eq. 7 by counting in python: R[u][v] = M(u -> v) / M(u), v != u, 0 for absent u."""
    rows = [[0.0] * c for _ in range(c)]
    for u in range(c):
        seen = [p for p, t in zip(pred, target, strict=True) if t == u]
        for v in range(c):
            if v != u and seen:
                rows[u][v] = sum(p == v for p in seen) / len(seen)
    return rows


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), beta=st.floats(0.0, 1.0))
def test_dccm_is_eq_8_unrolled(seed: int, beta: float) -> None:
    """From W = 0, T steps of Eq. 8 give W[u] = sum_t (1 - beta) beta^(n_t) R_t[u], n_t the
    later steps that observe u (rows of absent classes are frozen: our decision, the switch
    ``observed=None`` updates them too). Swapping beta and 1 - beta, or dropping the
    momentum, changes the sum; each R_t is checked against Eq. 7 counted by hand."""
    g = torch.Generator().manual_seed(seed)
    w = torch.zeros(5, 5)
    history: list[tuple[list[list[float]], list[bool]]] = []
    for _ in range(3):
        target = torch.randint(0, 6, (50,), generator=g)
        target[target == 5] = 255
        target[target == 4] = 255 if bool(torch.rand(1, generator=g) < 0.5) else 4
        pred = torch.randint(0, 5, (50,), generator=g)
        rates, observed = confusion_rates(pred, target, 5)
        by_hand = _rates_by_counting(pred.tolist(), target.tolist(), 5)
        assert torch.allclose(rates, torch.tensor(by_hand), atol=1e-6)
        assert observed.tolist() == [bool((target == u).any()) for u in range(5)]
        history.append((by_hand, observed.tolist()))
        w = update_dccm(w, rates, beta, observed)
    for u in range(5):
        for v in range(5):
            want = 0.0
            for t, (rows, seen) in enumerate(history):
                later = sum(s[u] for _, s in history[t + 1 :])
                want += (1 - beta) * beta**later * rows[u][v] if seen[u] else 0.0
            assert math.isclose(float(w[u, v]), want, abs_tol=1e-5), (u, v)
