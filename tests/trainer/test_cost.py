"""The cost model (issue 24): seconds per query kind, the spread, the ledger, the budget."""

import numpy as np
import pytest

from trainer.cost import (
    PIXEL,
    REGION,
    SKIP,
    CostModel,
    SecondsLedger,
    seconds_budget,
)


def test_charges_are_the_means_without_spread() -> None:
    model = CostModel()
    assert model.seconds == {PIXEL: 2.4, REGION: 3.0, SKIP: 1.2}
    assert model.charge(PIXEL, 3, 2, None) == pytest.approx(3 * 2.4 + 2 * 1.2)  # 9.6
    assert model.charge(REGION, 4, 0, None) == pytest.approx(12.0)
    assert model.most(REGION) == 3.0


def test_spread_is_seeded_and_bounded() -> None:
    model = CostModel(spread=0.5)
    a = model.charge(REGION, 100, 0, np.random.default_rng(1))
    b = model.charge(REGION, 100, 0, np.random.default_rng(1))
    assert a == b and a != 300.0
    one = [model.charge(REGION, 1, 0, np.random.default_rng(s)) for s in range(200)]
    assert 1.5 <= min(one) and max(one) <= model.most(REGION) == 4.5
    with pytest.raises(ValueError, match="spread"):
        CostModel(spread=1.0)


def test_ledger_books_per_group_and_budget_is_per_image() -> None:
    ledger = SecondsLedger(CostModel())
    ledger.charge(REGION, "high", 2, 1)
    ledger.charge(PIXEL, "medium", 1, 0)
    assert ledger.spent() == pytest.approx({"high": 7.2, "medium": 2.4})
    assert ledger.total == pytest.approx(9.6)
    assert seconds_budget(1.5, 32) == 48.0
    with pytest.raises(ValueError, match=">= 0"):
        seconds_budget(-1.0, 3)
