"""The schedule in passes: epoch-wise target batches, labels revisited, the config's names."""

from __future__ import annotations

import pytest
import torch

from trainer.config import TrainConfig, from_dict
from trainer.loop.schedule import new_loop_state, target_order


@pytest.mark.parametrize(("n", "batch"), [(10, 2), (11, 2), (7, 3), (1, 2)])
def test_every_pass_visits_every_image(n: int, batch: int) -> None:
    per_pass = -(-n // batch)
    order = target_order(n, 5 * per_pass, batch, torch.Generator().manual_seed(0))
    assert order.shape == (5 * per_pass, batch)
    passes = order.view(5, -1)
    for p in passes:
        assert set(p.tolist()) == set(range(n))  # each pass holds every image
    assert not torch.equal(passes[0], passes[1]) or n == 1  # a fresh order each pass


def test_target_order_is_seeded() -> None:
    a = target_order(9, 30, 2, torch.Generator().manual_seed(3))
    b = target_order(9, 30, 2, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


@pytest.mark.parametrize(("n", "batch"), [(40, 2), (500, 2), (2975, 2), (37, 4)])
def test_a_labeled_image_is_in_at_least_10_batches_after_its_label(n: int, batch: int) -> None:
    """The default schedule: an image labeled in any iteration of the query window comes back
    in at least 10 later batches (labels arrive before the step's loss, so a label trained on
    in the batch that asked for it counts as well; it is not counted here)."""
    cfg = TrainConfig(batch_target=batch)
    iterations = cfg.adapt_iterations(n)
    window = new_loop_state(cfg, 1000, 3, n).window
    order = target_order(n, iterations, batch, torch.Generator().manual_seed(0))
    assert cfg.passes - cfg.query_passes >= 10
    later = torch.zeros(n, dtype=torch.long)  # visits after the last query-window iteration
    for it in range(iterations - 1, window.query_until - 1, -1):
        later[order[it]] += 1
    last = window.query_until - 1  # a label from the window's last batch has the fewest
    assert int(later[order[last]].min()) >= 10
    assert int(later.min()) >= 10


def test_adapt_iterations_in_passes() -> None:
    assert TrainConfig().adapt_iterations(500) == 16 * 250
    assert TrainConfig(passes=27).adapt_iterations(2975) == 40_176  # Cityscapes at batch 2
    short = TrainConfig(passes=2, query_passes=1, batch_target=3)
    assert short.adapt_iterations(10) == 8  # 4 batches a pass
    assert TrainConfig(iterations=7).adapt_iterations(500) == 7
    assert TrainConfig(passes=0, iterations=0).adapt_iterations(500) == 0


def test_tiny_runs_keep_the_windows_share() -> None:
    window = new_loop_state(TrainConfig(iterations=32), 100, 3, 4).window
    assert (window.query_until, window.high_until, window.pass_length) == (12, 6, 2)


def test_config_names_the_replacement_of_iteration_keys() -> None:
    with pytest.raises(ValueError, match="query_fraction was replaced by query_passes"):
        from_dict({"query_fraction": 0.6})
    with pytest.raises(ValueError, match="decay_every was replaced by nothing"):
        from_dict({"decay_every": 10})
    # issue 20: counts that became shares name their replacement and the old value's share
    with pytest.raises(ValueError, match="cap_pseudo_below was replaced by cap_pseudo_below_rate"):
        from_dict({"cap_pseudo_below": 20.0})
    with pytest.raises(ValueError, match="min_low_samples was replaced by min_low_share"):
        from_dict({"min_low_samples": 64})
    with pytest.raises(ValueError, match="query_passes must lie in"):
        TrainConfig(passes=4, query_passes=5)
    assert TrainConfig(passes=0).adapt_iterations(10) == 0  # source-only: no window check
