"""mcu-cap: Algorithm 1's phases with a paced quota, split per image, capped per class."""

from __future__ import annotations

import torch

from trainer.constants import Group
from trainer.selection.mcucap import CapSettings, McuCap
from trainer.selection.views import BudgetView, QueryWindow, ScoreMaps

WINDOW = QueryWindow(expected=100, query_until=10, high_until=5, pass_length=1, high_cap=10**6)


def _paced(iteration: int, spent: dict[str, int]) -> tuple[str, int]:
    view = BudgetView.at(WINDOW, iteration, spent)
    phase = view.phase()
    return phase, view.high_paced() if phase == "high" else view.medium_paced()


def test_the_phases_pace_each_half_over_its_iterations() -> None:
    assert _paced(0, {}) == ("high", 10)  # 50 over 5 iterations
    assert _paced(4, {"high": 30}) == ("high", 20)
    assert _paced(2, {"high": 50}) == ("medium", 10)  # the high half is spent
    assert _paced(7, {"high": 40, "medium": 20}) == ("medium", 14)  # 40 over 3
    assert _paced(9, {"high": 50, "medium": 50})[1] == 0


def cap_select(
    settings: CapSettings,
    window: QueryWindow,
    iteration: int,
    score: torch.Tensor,
    groups: torch.Tensor,
    prob: torch.Tensor,
    unasked: torch.Tensor,
    spent: dict[str, int],
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, str]:
    maps = ScoreMaps(score, groups, prob, unasked)
    return McuCap(settings).select(maps, BudgetView.at(window, iteration, spent), generator)


def _batch(n: int = 2, h: int = 4, w: int = 8):
    groups = torch.full((n, h, w), Group.LOW, dtype=torch.uint8)
    prob = torch.zeros(n, 2, h, w)
    prob[:, 0] = 1.0
    return groups, prob, torch.ones(n, h, w, dtype=torch.bool), torch.rand(n, h, w)


def test_the_quota_is_split_over_the_images_not_taken_from_the_one_with_most_g_h() -> None:
    groups, prob, unasked, score = _batch()
    groups[0] = Group.HIGH  # every G_h pixel is in image 0
    settings = CapSettings(cap_class_share=1.0, cap_impurity=False, cap_radius_k=0.0)
    mask, phase = cap_select(
        settings, WINDOW, 0, score, groups, prob, unasked, {}, torch.Generator().manual_seed(0)
    )
    assert phase == "high"
    assert mask.sum((1, 2)).tolist() == [5, 5]  # Algorithm 1 would take 10 from image 0


def test_no_predicted_class_takes_more_than_its_share_of_an_image() -> None:
    groups, prob, unasked, score = _batch(n=1)
    groups[:] = Group.HIGH
    prob[0, :, :, 4:] = torch.tensor([0.0, 1.0]).view(2, 1, 1)  # right half predicts class 1
    score[0, :, :4] += 10.0  # class 0 pixels are the most uncertain
    capped = CapSettings(cap_class_share=0.5, cap_impurity=False, cap_radius_k=0.0)
    # impurity off: the rank is uniform within the group; the cap alone decides the split
    mask, _ = cap_select(capped, WINDOW, 0, score, groups, prob, unasked, {})
    assert int(mask[0, :, :4].sum()) == 5 and int(mask[0, :, 4:].sum()) == 5


def test_impurity_ranks_predicted_boundaries_first_and_windows_spread_picks() -> None:
    groups, prob, unasked, score = _batch(n=1, h=8, w=8)
    groups[:] = Group.HIGH
    prob[0, :, :, 4:] = torch.tensor([0.0, 1.0]).view(2, 1, 1)  # a boundary at column 3/4
    score = torch.ones(1, 8, 8)
    window = QueryWindow(expected=8, query_until=1, high_until=1, pass_length=1, high_cap=10**6)
    settings = CapSettings(cap_class_share=1.0, cap_impurity=True, cap_radius_k=0.0)
    mask, _ = cap_select(settings, window, 0, score, groups, prob, unasked, {})
    assert int(mask.sum()) == 4  # the high half of 8
    assert set(mask[0].nonzero()[:, 1].tolist()) <= {3, 4}  # impurity > 0 only there
    spread = CapSettings(cap_class_share=1.0, cap_impurity=True, cap_radius_k=120.0)  # K=1
    mask, _ = cap_select(spread, window, 0, score, groups, prob, unasked, {})
    picks = mask[0].nonzero()
    assert len(picks) == 4 and set(picks[:, 1].tolist()) <= {3, 4}
    gaps = (picks[:, None] - picks[None]).abs().amax(-1) + 8 * torch.eye(4, dtype=torch.long)
    assert int(gaps.min()) >= 2  # no two picks within one pixel of each other
