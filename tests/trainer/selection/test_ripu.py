"""RIPU as its authors select: the radius rule, the scores, greedy window blanking, regions."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from trainer.selection.greedy import greedy_select
from trainer.selection.ripu import (
    blocked_by_asked,
    impurity,
    pa_score,
    predicted,
    ra_score,
    ripu_select,
    scaled_radius,
)
from trainer.selection.uncertainty import entropy


def region_impurity(pred: torch.Tensor, num_classes: int, kernel_size: int) -> torch.Tensor:
    """The reference: entropy / log C of the predicted-class histogram of the in-image part of
    each ``k x k`` window, by average pooling of the one-hot maps."""
    onehot = F.one_hot(pred.long(), num_classes).permute(0, 3, 1, 2).float()
    hist = F.avg_pool2d(
        onehot, kernel_size, stride=1, padding=kernel_size // 2, count_include_pad=False
    )
    return entropy(hist)


def _where(mask: torch.Tensor) -> set[tuple[int, ...]]:
    return {tuple(p) for p in mask.nonzero().tolist()}


def test_radius_scales_with_the_square_root_of_the_area() -> None:
    assert scaled_radius(32, 640, 1280) == 32  # their training size
    assert scaled_radius(32, 64, 128) == 3  # the bundled benchmark: 0.1 x
    assert scaled_radius(32, 512, 1024) == 26
    assert scaled_radius(1, 64, 128) == 1  # RA's 3x3 regions stay 3x3
    assert scaled_radius(0, 64, 128) == 0


def _seven() -> torch.Tensor:
    s = torch.zeros(1, 7, 7)
    s[0, 3, 3], s[0, 3, 4], s[0, 0, 0], s[0, 6, 6], s[0, 1, 1] = 9, 8, 7, 6, 5
    return s


def test_greedy_blanks_the_window_around_each_pick() -> None:
    s = _seven()
    free = torch.ones(1, 7, 7, dtype=torch.bool)
    got = greedy_select(s, free, free, torch.tensor([3]), block_radius=1)
    # plain top-3 would take (3,3), (3,4), (0,0): (3,4) and (1,1) sit next to a pick
    assert _where(got) == {(0, 3, 3), (0, 0, 0), (0, 6, 6)}
    got = greedy_select(s, free, free, torch.tensor([3]), block_radius=0)
    assert _where(got) == {(0, 3, 3), (0, 3, 4), (0, 0, 0)}


def test_windows_blanked_in_earlier_rounds_stay_blanked() -> None:
    s = _seven()
    unasked = torch.ones(1, 7, 7, dtype=torch.bool)
    unasked[0, 3, 3] = False  # picked in an earlier round
    eligible = unasked & ~blocked_by_asked(unasked, 1)
    got = greedy_select(s, eligible, unasked, torch.tensor([2]), block_radius=1)
    assert _where(got) == {(0, 0, 0), (0, 6, 6)}  # (3,4) is within 1 of the old pick
    assert not got[0, 3, 3]


def test_an_image_with_every_pixel_blanked_starts_a_fresh_sweep() -> None:
    s = torch.arange(9.0).view(1, 3, 3)
    free = torch.ones(1, 3, 3, dtype=torch.bool)
    got = greedy_select(s, free, free, torch.tensor([3]), block_radius=1)
    # the first pick (2,2) blanks the whole 3x3 image: the next picks come from a new sweep
    assert int(got.sum()) == 3 and got[0, 2, 2]
    asked_all = greedy_select(s, free, free, torch.tensor([20]), block_radius=1)
    assert int(asked_all.sum()) == 9  # never more than the unasked pixels


def test_regions_are_labeled_whole_and_cut_at_the_quota() -> None:
    s = torch.zeros(1, 7, 7)
    s[0, 1, 1], s[0, 2, 2], s[0, 5, 5] = 3, 2, 1
    free = torch.ones(1, 7, 7, dtype=torch.bool)
    one = greedy_select(s, free, free, torch.tensor([9]), block_radius=2, label_radius=1)
    assert _where(one) == {(0, y, x) for y in range(3) for x in range(3)}
    more = greedy_select(s, free, free, torch.tensor([11]), block_radius=2, label_radius=1)
    # (2,2) lies within 2 of (1,1): the next region is (5,5)'s, cut to 2 pixels, raster order
    assert _where(more) == _where(one) | {(0, 4, 4), (0, 4, 5)}


def test_region_score_averages_entropy_over_the_region() -> None:
    prob = torch.zeros(1, 2, 3, 3)
    prob[0, 0] = 1.0
    prob[0, :, 0, 0] = 0.5  # entropy 1 (normalised), argmax 0
    prob[0, :, 2, 2] = torch.tensor([0.0, 1.0])  # predicted class 1
    score = ra_score(prob, 1)
    # only the centre's window holds both the uncertain pixel and another class
    impurity = -(8 / 9 * math.log(8 / 9) + 1 / 9 * math.log(1 / 9)) / math.log(2)
    expect = torch.zeros(1, 3, 3)
    expect[0, 1, 1] = impurity / 9
    assert torch.allclose(score, expect, atol=1e-6)


def test_pixel_score_is_the_ripu_score_at_the_window_size() -> None:
    prob = torch.randn(2, 4, 9, 11, generator=torch.Generator().manual_seed(0)).softmax(1)
    want = region_impurity(prob.argmax(1), 4, 5) * entropy(prob)
    assert torch.allclose(pa_score(prob, 2), want)


@pytest.mark.parametrize("regions", [False, True])
def test_ripu_select_takes_each_images_quota_and_only_unasked(regions: bool) -> None:
    prob = torch.randn(2, 3, 12, 16, generator=torch.Generator().manual_seed(1)).softmax(1)
    unasked = torch.ones(2, 12, 16, dtype=torch.bool)
    unasked[0, :4] = False
    got = ripu_select(prob, unasked, torch.tensor([20, 7]), 1, regions)
    assert got.sum((1, 2)).tolist() == [20, 7]
    assert not (got & ~unasked).any()


@pytest.mark.parametrize("kernel", [1, 3, 5, 9])
def test_impurity_by_packed_counts_is_the_pooled_one(kernel: int) -> None:
    gen = torch.Generator().manual_seed(kernel)
    pred = torch.randint(0, 3, (2, 11, 14), generator=gen)
    pred[0, :6, :7] = 1  # a pure block: exactly 0 inside
    pred[1] = torch.where(pred[1] == 2, 5, pred[1])  # classes 2-4 absent
    got = impurity(pred, 7, kernel)
    assert torch.allclose(got, region_impurity(pred, 7, kernel), atol=1e-5)
    if kernel == 3:
        assert (got[0, 1:5, 1:6] == 0).all() and (got[0, 6:] > 0).any()


def test_predicted_is_the_first_argmax() -> None:
    prob = torch.tensor([0.2, 0.4, 0.4, 0.0]).view(1, 4, 1, 1).repeat(1, 1, 2, 3)
    prob[0, :, 1, 2] = torch.tensor([0.1, 0.1, 0.1, 0.7])
    assert predicted(prob).tolist() == [[[1, 1, 1], [1, 1, 3]]]
    rand = torch.rand(2, 5, 6, 7, generator=torch.Generator().manual_seed(0))
    assert torch.equal(predicted(rand), rand.argmax(1))


def test_region_impurity_by_hand() -> None:
    pred = torch.tensor([[[0, 0, 1], [0, 0, 1], [0, 0, 1]]])
    imp = impurity(pred, 4, 3)
    assert imp[0, 0, 0].item() == 0.0  # neighbourhood {0,0,0,0}
    # centre: six 0s, three 1s
    expected = -(6 / 9 * math.log(6 / 9) + 3 / 9 * math.log(3 / 9)) / math.log(4)
    assert math.isclose(imp[0, 1, 1].item(), expected, rel_tol=1e-6)
    # corner (0, 2): {0, 1, 0, 1} -> entropy log 2
    assert math.isclose(imp[0, 0, 2].item(), math.log(2) / math.log(4), rel_tol=1e-6)
    assert torch.equal(impurity(torch.zeros(1, 3, 3, dtype=torch.long), 4, 3), torch.zeros(1, 3, 3))


def test_ripu_score_is_impurity_times_entropy() -> None:
    prob = torch.softmax(torch.randn(1, 3, 4, 4, generator=torch.Generator().manual_seed(0)), 1)
    ent = -(prob * prob.log()).sum(1) / math.log(3)
    assert torch.allclose(pa_score(prob, 1), impurity(prob.argmax(1), 3, 3) * ent, atol=1e-6)


def _direct_impurity(pred: torch.Tensor, num_classes: int, kernel_size: int) -> torch.Tensor:
    """Per pixel: the entropy / log C of the classes in the in-image part of its window."""
    r, (n, h, w) = kernel_size // 2, pred.shape
    out = torch.zeros(n, h, w, dtype=torch.float64)
    for i in range(n):
        for y in range(h):
            for x in range(w):
                win = pred[i, max(0, y - r) : y + r + 1, max(0, x - r) : x + r + 1]
                share = torch.bincount(win.reshape(-1), minlength=num_classes).double()
                share = share[share > 0] / win.numel()
                out[i, y, x] = -(share * share.log()).sum() / math.log(num_classes)
    return out


@pytest.mark.parametrize("kernel", [3, 7, 53])
def test_impurity_in_row_blocks_is_the_direct_per_pixel_one(kernel: int, monkeypatch) -> None:
    """Maps taller than a block (rows cut across blocks, borders in every block), 19 classes
    with a few absent, more classes than fit one packed word: the blocked path equals a
    direct count at every pixel, is exactly 0 on pure windows, and is the same number with
    one block for the whole map."""
    gen = torch.Generator().manual_seed(kernel)
    pred = torch.randint(0, 16, (2, 75, 9), generator=gen)  # classes 16-18 absent
    pred[0, 30:60] = 4  # a pure band across a block boundary
    got = impurity(pred, 19, kernel)
    assert torch.allclose(got.double(), _direct_impurity(pred, 19, kernel), atol=1e-5)
    r = kernel // 2
    assert (got[0, 30 + r : 60 - r] == 0).all()
    monkeypatch.setattr("trainer.selection.ripu.ROWS", 1000)
    assert torch.equal(impurity(pred, 19, kernel), got)
