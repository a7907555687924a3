"""configure(): a strategy's overrides, the caller's changes, and the clashes between them."""

from __future__ import annotations

import pytest

from trainer.config import TrainConfig
from trainer.strategies import STRATEGIES, configure


def test_strategy_overrides_the_base_and_keeps_other_changes() -> None:
    base = TrainConfig(pseudo_labels=True, lr=0.5)
    cfg = configure(base, "random", budget_rate=0.05, seed=3)
    assert (cfg.strategy, cfg.selection, cfg.pseudo_labels) == ("random", "random", False)
    assert (cfg.budget_rate, cfg.seed, cfg.lr) == (0.05, 3, 0.5)


def test_a_change_the_strategy_overrides_is_refused() -> None:
    with pytest.raises(ValueError, match=r"strategy 'random' overrides pseudo_labels=True"):
        configure(TrainConfig(), "random", pseudo_labels=True)
    with pytest.raises(ValueError, match=r"'source-only' overrides iterations=100 \(it sets 0\)"):
        configure(TrainConfig(), "source-only", iterations=100)


def test_a_change_equal_to_the_strategys_value_is_fine() -> None:
    assert configure(TrainConfig(), "random", pseudo_labels=False).pseudo_labels is False
    assert configure(TrainConfig(), "source-only", iterations=0).iterations == 0


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_every_strategy_sets_its_name(strategy: str) -> None:
    assert configure(TrainConfig(), strategy).strategy == strategy
    with pytest.raises(ValueError, match="unknown strategy"):
        configure(TrainConfig(), strategy + "-x")
