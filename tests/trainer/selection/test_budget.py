"""Every selection that takes per-image quotas spends exactly ``min(quota, unasked)`` per image.

A seeded random sweep (hypothesis is not a dependency) over scores, quotas, radii and asked
masks, built so that the hard cases come up in every run: an empty eligible set (every pixel
within the window of an earlier ask), images fully asked, quotas above what is left, zero
quotas, one-pixel images. The selection functions are called directly.
"""

from __future__ import annotations

import pytest
import torch

from trainer.constants import Group
from trainer.selection.baselines import image_quotas, margin_uncertainty, pixelpick_select
from trainer.selection.greedy import greedy_select
from trainer.selection.mcucap import CapSettings, McuCap
from trainer.selection.ripu import blocked_by_asked, ripu_select
from trainer.selection.views import BudgetView, QueryWindow, ScoreMaps

CASES = range(40)


def _asked(gen: torch.Generator, n: int, h: int, w: int, case: int) -> torch.Tensor:
    """(N,H,W) bool unasked: case % 4 == 0 a sparse grid of asks (nothing eligible once the
    windows are blanked), 1 random asks, 2 nothing asked, 3 one image fully asked."""
    unasked = torch.ones(n, h, w, dtype=torch.bool)
    kind = case % 4
    if kind == 0:
        unasked[:, :: 2 + case % 3, :: 2 + case % 2] = False
    elif kind == 1:
        unasked = torch.rand(n, h, w, generator=gen) > torch.rand(1, generator=gen)
    elif kind == 3:
        unasked[0] = False
    return unasked


def _draw(case: int):
    gen = torch.Generator().manual_seed(1000 + case)
    n = 1 + case % 3
    h, w = (int(v) for v in torch.randint(3, 14, (2,), generator=gen))
    if case % 13 == 12:
        h, w = 1, 1
    score = (torch.rand(n, h, w, generator=gen) * (2 + case % 5)).floor()  # ties
    unasked = _asked(gen, n, h, w, case)
    quotas = torch.randint(0, h * w + 3, (n,), generator=gen)
    return gen, score, unasked, quotas


def _want(unasked: torch.Tensor, quotas: torch.Tensor) -> list[int]:
    return torch.minimum(quotas, unasked.sum((1, 2))).tolist()


def _check(got: torch.Tensor, unasked: torch.Tensor, quotas: torch.Tensor) -> None:
    assert not (got & ~unasked).any()
    assert got.sum((1, 2)).tolist() == _want(unasked, quotas)


@pytest.mark.parametrize("case", CASES)
def test_greedy_spends_every_quota(case: int) -> None:
    gen, score, unasked, quotas = _draw(case)
    block = case % 4
    label = (case // 4) % 2 * (block // 2)
    eligible = unasked & ~blocked_by_asked(unasked, block)
    if case % 5 == 0:
        eligible = torch.zeros_like(unasked)  # an empty eligible set
    classes = caps = None
    if case % 3 == 1:
        classes = torch.randint(0, 3, score.shape, generator=gen)
        caps = torch.randint(1, 4, quotas.shape, generator=gen)
    got = greedy_select(score, eligible, unasked, quotas, block, label, classes, caps)
    _check(got, unasked, quotas)


@pytest.mark.parametrize("regions", [False, True])
@pytest.mark.parametrize("case", CASES)
def test_ripu_spends_every_quota(case: int, regions: bool) -> None:
    gen, score, unasked, quotas = _draw(case)
    prob = torch.randn(score.shape[0], 4, *score.shape[1:], generator=gen).softmax(1)
    got = ripu_select(prob, unasked, quotas, 1 + case % 3, regions)
    _check(got, unasked, quotas)


@pytest.mark.parametrize("case", CASES)
def test_pixelpick_spends_every_quota(case: int) -> None:
    gen, score, unasked, quotas = _draw(case)
    prob = torch.randn(score.shape[0], 3, *score.shape[1:], generator=gen).softmax(1)
    got = pixelpick_select(margin_uncertainty(prob), unasked, quotas, 0.05, gen)
    _check(got, unasked, quotas)


@pytest.mark.parametrize("case", CASES)
def test_mcu_cap_spends_every_images_share(case: int) -> None:
    gen, score, unasked, _ = _draw(case)
    n, h, w = unasked.shape
    expected = int(torch.randint(1, 2 * n * h * w, (1,), generator=gen))
    window = QueryWindow(expected, query_until=4, high_until=2, pass_length=1, high_cap=10**6)
    iteration, spent = case % 4, {"high": (case % 2) * (expected // 2)}
    groups = torch.randint(0, 3, score.shape, generator=gen).to(torch.uint8)
    groups[0] = Group.LOW if case % 2 else groups[0]  # a group that runs dry
    prob = torch.randn(n, 3, h, w, generator=gen).softmax(1)
    settings = CapSettings(0.25 + 0.75 * (case % 2), bool(case % 3), float(case % 4) * 8)
    budget = BudgetView.at(window, iteration, spent)
    got, _ = McuCap(settings).select(ScoreMaps(score, groups, prob, unasked), budget, gen)
    quota = budget.high_paced() if budget.phase() == "high" else budget.medium_paced()
    _check(got, unasked, image_quotas(quota, 1, n))
