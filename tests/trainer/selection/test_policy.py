"""The one policy interface: every selection name has its policy, the simple ones by hand,
and the window and the cap of the budget view bound every strategy."""

from __future__ import annotations

import pytest
import torch

from trainer.config import Selection, TrainConfig
from trainer.constants import Group
from trainer.selection.policy import POLICIES, NoQueries, TopK, Uniform, make_policy
from trainer.selection.sampling import ActiveSampler
from trainer.selection.views import BudgetView, QueryWindow, ScoreMaps

WINDOW = QueryWindow(40, query_until=4, high_until=2, pass_length=1, high_cap=100)


def _maps(n: int = 2, h: int = 4, w: int = 5) -> ScoreMaps:
    score = torch.arange(n * h * w, dtype=torch.float).view(n, h, w)
    prob = torch.softmax(torch.randn(n, 3, h, w, generator=torch.Generator().manual_seed(0)), 1)
    groups = torch.full((n, h, w), Group.MEDIUM, dtype=torch.uint8)
    return ScoreMaps(score, groups, prob, torch.ones(n, h, w, dtype=torch.bool))


def test_every_selection_name_has_its_policy_and_no_other_name_is_taken() -> None:
    assert set(POLICIES) == set(Selection)
    sampler = ActiveSampler()
    assert make_policy(TrainConfig(selection="algorithm1"), sampler) is sampler  # its thresholds
    assert isinstance(make_policy(TrainConfig(selection="all"), sampler), NoQueries)
    with pytest.raises(ValueError, match="selection must be one of"):
        TrainConfig(selection="algorithm-one")
    with pytest.raises(ValueError, match="weight_mode must be one of"):
        TrainConfig(weight_mode="both")
    with pytest.raises(ValueError, match="fixed_shapes must be one of"):
        TrainConfig(fixed_shapes="yes")


def test_the_simple_policies_by_hand() -> None:
    maps, gen = _maps(), torch.Generator().manual_seed(0)
    view = BudgetView.at(WINDOW, 1, {"random": 10})  # 30 left over 3 iterations: 10 now
    mask, group = Uniform().select(maps, view, gen)
    assert group == "random" and int(mask.sum()) == 10
    mask, group = TopK("entropy", lambda m: m.score).select(maps, view, gen)
    assert group == "entropy" and torch.equal(mask.flatten(), torch.arange(40) >= 30)
    mask, group = NoQueries().select(maps, view, gen)
    assert group == "none" and not mask.any()


@pytest.mark.parametrize("selection", [s.value for s in Selection])
def test_nothing_is_asked_after_the_window_and_a_binding_cap_is_spent(selection: str) -> None:
    cfg = TrainConfig(selection=selection, ripu_radius_k=0.0, cap_radius_k=0.0)
    policy, gen = make_policy(cfg, ActiveSampler()), torch.Generator().manual_seed(0)
    mask, group = policy.select(_maps(), BudgetView.at(WINDOW, 4, {}), gen)
    assert group == "done" and not mask.any()
    maps = _maps()
    maps.groups[:, :2] = Group.HIGH  # 20 G_h pixels: Algorithm 1 would take 10 without the cap
    capped = BudgetView(40, {}, cap=3, epoch_end=False)  # a session's round of 3
    asked = policy.select(maps, capped, gen).mask
    # the cap binds: every strategy that asks takes exactly 3 unasked pixels, not fewer
    assert int(asked.sum()) == (0 if selection in ("none", "all") else 3)
