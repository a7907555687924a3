"""Region queries (issue 24): region sums, impurity, scores, picks and dominant labels,
checked against values worked out by hand."""

import math

import pytest
import torch

from trainer.constants import Group
from trainer.selection.regions import (
    PURE_WEIGHT,
    RegionCap,
    RegionRandom,
    RegionRank,
    cap_region_score,
    dominant_answers,
    pick_regions,
    region_impurity,
    region_means,
    ripu_region_score,
)
from trainer.selection.views import BudgetView, QueryWindow, ScoreMaps

# one 2x4 image, two regions: the left 2x2 (id 0) and the right 2x2 (id 1)
REGIONS = torch.tensor([[[0, 0, 1, 1], [0, 0, 1, 1]]])


def _maps(pred: torch.Tensor, score: torch.Tensor, groups=None, unasked=None) -> ScoreMaps:
    """Maps whose softmax puts 0.9 on ``pred`` of 2 classes (entropy of (0.9, 0.1) each)."""
    prob = torch.stack([torch.where(pred == 0, 0.9, 0.1), torch.where(pred == 1, 0.9, 0.1)], 1)
    groups = groups if groups is not None else torch.full_like(pred, int(Group.MEDIUM))
    unasked = unasked if unasked is not None else torch.ones_like(pred, dtype=torch.bool)
    return ScoreMaps(score, groups, prob, unasked, REGIONS)


def test_region_means_and_impurity_by_hand() -> None:
    values = torch.tensor([[[1.0, 2.0, 10.0, 10.0], [3.0, 4.0, 10.0, 10.0]]])
    assert region_means(values, REGIONS, 2).tolist() == [[2.5, 10.0]]
    pred = torch.tensor([[[0, 1, 1, 1], [0, 1, 1, 1]]])  # left half/half, right pure
    impurity = region_impurity(pred, REGIONS, 2, 2)
    assert impurity[0, 0].item() == pytest.approx(math.log(2))
    assert impurity[0, 1].item() == 0.0


def test_ripu_region_score_is_mean_entropy_times_impurity() -> None:
    pred = torch.tensor([[[0, 1, 1, 1], [0, 1, 1, 1]]])
    score = ripu_region_score(_maps(pred, torch.zeros(1, 2, 4)), 2)
    entropy = -(0.9 * math.log(0.9) + 0.1 * math.log(0.1))  # 0.3251
    assert score[0, 0].item() == pytest.approx(entropy * math.log(2), rel=1e-5)
    assert score[0, 1].item() == pytest.approx(entropy * PURE_WEIGHT, rel=1e-5)


def test_cap_region_score_ranks_the_wanted_group_first() -> None:
    pred = torch.tensor([[[0, 1, 1, 1], [0, 1, 1, 1]]])
    score = torch.tensor([[[0.2, 0.4, 0.9, 0.9], [0.2, 0.4, 0.9, 0.9]]])
    high = torch.tensor([[[0, 0, 2, 2], [0, 0, 2, 2]]])  # right region in G_h, left in G_l
    got = cap_region_score(_maps(pred, score, high), 2, int(Group.HIGH))
    # left: mean S 0.3 x ln 2 = 0.2079 (the batch's largest, so 1.0), no G_h, all G_l
    # right: 0.9 x 1e-3 = 0.0009 -> 0.0009 / 0.2079 = 0.00433, all G_h (+2), none G_l (+1)
    assert got[0, 0].item() == pytest.approx(1.0)
    assert got[0, 1].item() == pytest.approx(0.9e-3 / (0.3 * math.log(2)) + 3.0, rel=1e-4)


def test_pick_regions_takes_the_top_eligible_per_image() -> None:
    rank = torch.tensor([[0.1, 0.9, 0.5], [0.3, 0.2, 0.1]])
    eligible = torch.tensor([[True, False, True], [True, True, True]])
    chosen = pick_regions(rank, eligible, torch.tensor([1, 2]))
    assert chosen.tolist() == [[False, False, True], [True, True, False]]


def test_dominant_answers_label_the_region_and_count_the_noise() -> None:
    # region 7: answers 2, 2, 3 -> 2 (one noisy pixel); region 9: 5, 255 -> 5 (255 not
    # counted); region 4: only 255 -> a skip; region 1: 0, 1 tie -> 0 (the smaller id)
    ids = torch.tensor([7, 7, 7, 9, 9, 4, 1, 1])
    answers = torch.tensor([2, 2, 3, 5, 255, 255, 0, 1])
    labels, noisy, counted = dominant_answers(ids, answers)
    assert labels.tolist() == [2, 2, 2, 5, 5, 255, 0, 0]
    assert (noisy, counted) == (2, 6)  # the 3 and the 1 of 2,2,3,5,0,1


def test_region_policies_ask_whole_unasked_regions() -> None:
    pred = torch.tensor([[[0, 1, 1, 1], [0, 1, 1, 1]]])
    unasked = torch.ones(1, 2, 4, dtype=torch.bool)
    unasked[0, 0, 0] = False  # one pixel of the left region was asked before
    maps = _maps(pred, torch.rand(1, 2, 4), unasked=unasked)
    view = BudgetView(1, {}, None)
    mask = RegionRank().select(maps, view).mask  # the impure left region, its 3 unasked pixels
    assert mask.tolist() == [[[False, True, False, False], [True, True, False, False]]]
    gen = torch.Generator().manual_seed(0)
    mask = RegionRandom().select(maps, BudgetView(2, {}, None), gen).mask
    assert mask.sum() == 7  # both regions, the asked pixel left out
    assert RegionRandom().kind == "region"


def test_region_cap_follows_algorithm_1s_phases() -> None:
    pred = torch.tensor([[[0, 1, 1, 1], [0, 1, 1, 1]]])
    maps = _maps(pred, torch.rand(1, 2, 4))
    window = QueryWindow(4, 4, 2, 4, 4)  # M_e = 4 regions, the high phase in iterations 0-1
    assert RegionCap().select(maps, BudgetView.at(window, 0, {})).group == "high"
    assert RegionCap().select(maps, BudgetView.at(window, 0, {"high": 2})).group == "medium"
    done = RegionCap().select(maps, BudgetView.at(window, 2, {"high": 2, "medium": 2}))
    assert done.mask.sum() == 0
