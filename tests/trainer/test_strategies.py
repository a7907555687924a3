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


def test_mcu_cap_takes_pseudo_labels_only_under_its_budget_rate() -> None:
    from trainer.loop.train import budget_total
    from trainer.strategies import for_budget

    cap = configure(TrainConfig(), "mcu-cap")
    assert not cap.pseudo_labels and cap.mcu_true_labels and cap.cap_pseudo_below_rate == 0.0024
    pixels = 32 * 64 * 128  # the bundled benchmark's 32 target images of 64x128
    few = for_budget(cap, expected=8 * 32, target_pixels=pixels)  # 8 labels an image (0.1 %)
    assert few.pseudo_labels and not few.mcu_true_labels
    assert few.replace(pseudo_labels=False, mcu_true_labels=True) == cap  # nothing else moved
    assert for_budget(cap, expected=20 * 32, target_pixels=pixels) is cap  # 20 an image: as is
    assert for_budget(cap.replace(cap_pseudo_below_rate=0.0), 1, pixels).pseudo_labels is False
    full = configure(TrainConfig(), "full")
    assert for_budget(full, 1, pixels) is full  # other strategies as they are
    # the old rule (20 labels a target image) at 64x128, at every budget a preset runs: the
    # same answer, so the bundled results do not move
    for rate in (0.001, 0.005, 0.017, 0.068):
        expected = budget_total(rate, pixels)
        old = expected < 20 * 32
        assert for_budget(cap, expected, pixels).pseudo_labels is old
    # the same rule at Cityscapes' size: a share of the pixels, not 20 labels an image
    city = 2975 * 1024 * 2048
    assert for_budget(cap, budget_total(0.001, city), city).pseudo_labels  # 2,097 an image
    assert for_budget(cap, budget_total(0.017, city), city) is cap
