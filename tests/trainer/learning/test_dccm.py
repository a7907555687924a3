"""Eq. 7-8: confusion rates and the EMA update."""

from __future__ import annotations

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


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), beta=st.floats(0.0, 1.0))
def test_dccm_stays_a_rate_matrix(seed: int, beta: float) -> None:
    g = torch.Generator().manual_seed(seed)
    w = torch.zeros(5, 5)
    for _ in range(3):
        target = torch.randint(0, 6, (50,), generator=g)
        target[target == 5] = 255
        pred = torch.randint(0, 5, (50,), generator=g)
        rates, observed = confusion_rates(pred, target, 5)
        assert torch.all(rates.diagonal() == 0) and torch.all(rates >= 0)
        assert torch.all(rates.sum(1) <= 1 + 1e-6)
        assert torch.all(rates[~observed] == 0)
        w = update_dccm(w, rates, beta, observed)
    assert torch.all(w >= 0) and torch.all(w.sum(1) <= 1 + 1e-6)
