"""Budgets in annotator seconds (issue 24): the view in queries, Algorithm 1's M_e/2 split in
seconds, the alternation of pixels and regions, and the registry's refusals."""

import pytest
import torch

from trainer.config import TrainConfig
from trainer.cost import PIXEL_SECONDS, REGION_SECONDS
from trainer.selection.policy import make_policy
from trainer.selection.regions import RegionCap
from trainer.selection.sampling import ActiveSampler, AlgorithmOneState
from trainer.selection.seconds import Alternate, SecondsBudget, in_queries
from trainer.selection.views import BudgetView, QueryWindow, ScoreMaps
from trainer.strategies import configure


def test_in_queries_by_hand() -> None:
    window = QueryWindow(expected=999, query_until=10, high_until=5, pass_length=5, high_cap=1)
    view = BudgetView.at(window, 3, {"high": 4.5, "medium": 3.0})
    got = in_queries(view, 31.0, 3.0, 2.0)
    assert got.expected == 10  # floor(31 / 3)
    assert dict(got.spent) == {"high": 2, "medium": 1}  # 4.5 s -> 2 queries (rounded up)
    assert got.window.expected == 10 and got.window.high_cap == 2  # ceil(ceil(5 / 5) x 2)
    assert got.left == 7 and got.phase() == "high"  # 4.5 s from G_h < 15.5 s, half of 31


def test_the_high_phase_ends_at_half_the_seconds() -> None:
    window = QueryWindow(expected=0, query_until=10, high_until=5, pass_length=5, high_cap=1)
    # 30 s at 3 s a query: M_e = 10 queries, M_e // 2 = 5 from G_h; spent seconds round up to
    # queries, so the high phase ends within one query (3 s) of half the seconds: at 12 s
    # plus anything (a skip's 1.2 s), once a query more could pass 15 s
    assert in_queries(BudgetView.at(window, 1, {"high": 12.0}), 30.0, 3.0, 2).phase() == "high"
    assert in_queries(BudgetView.at(window, 1, {"high": 13.2}), 30.0, 3.0, 2).phase() == "medium"
    spent = {"high": 15.0, "medium": 14.0}  # 1 s left: less than a query, so nothing is left
    assert in_queries(BudgetView.at(window, 7, spent), 30.0, 3.0, 2).phase() == "done"


def test_seconds_budget_never_plans_past_the_seconds() -> None:
    regions = torch.arange(8).repeat_interleave(4).view(1, 4, 8)  # 8 regions of 4 pixels
    maps = ScoreMaps(
        torch.rand(1, 4, 8),
        torch.ones(1, 4, 8, dtype=torch.long),
        torch.full((1, 2, 4, 8), 0.5),
        torch.ones(1, 4, 8, dtype=torch.bool),
        regions,
    )
    policy = SecondsBudget(RegionCap(), budget_seconds=10.0, most=3.0, cap_factor=2.0)
    picked = policy.select(maps, BudgetView(0, {"high": 2.0}, None))  # 8 s left: 2 regions
    assert int(regions[picked.mask].unique().numel()) == 2 and policy.kind == "region"


def test_make_policy_kinds_and_refusals() -> None:
    sampler = ActiveSampler(AlgorithmOneState(), True)
    cfg = configure(TrainConfig(), "region-cap")
    with pytest.raises(ValueError, match="budget_seconds_per_image > 0"):
        make_policy(cfg, sampler, 10)
    timed = cfg.replace(budget_seconds_per_image=3.0)
    policy = make_policy(timed, sampler, 10)
    assert isinstance(policy, SecondsBudget) and policy.most == REGION_SECONDS
    assert policy.budget_seconds == 30.0
    both = make_policy(timed.replace(query_kind="both"), sampler, 10)
    assert isinstance(both, Alternate)
    assert both.kind_at(BudgetView(1, {}, None, 0)) == "pixel"
    assert both.kind_at(BudgetView(1, {}, None, 1)) == "region"
    pixels = make_policy(
        configure(TrainConfig(), "random", budget_seconds_per_image=1.0), sampler, 4
    )
    assert isinstance(pixels, SecondsBudget) and pixels.most == PIXEL_SECONDS
    no_region_form = configure(TrainConfig(), "pixelpick").replace(
        query_kind="regions", budget_seconds_per_image=1.0
    )
    with pytest.raises(ValueError, match="no region form"):
        make_policy(no_region_form, sampler, 4)
