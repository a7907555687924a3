"""Greedy window blanking by sweeps of peaks == RIPU's pick-by-pick loop."""

from __future__ import annotations

import pytest
import torch

from trainer.greedy import dilate, greedy_select, ranks, sweep


def _loop(score, eligible, free, quota, block, label):
    """RIPU's loop for one image: argmax (first in raster order on ties), label, blank."""
    h, w = score.shape
    taken = torch.zeros_like(free)
    avail = eligible & free
    while int(taken.sum()) < quota:
        if not avail.any():
            avail = free & ~taken
            if not avail.any():
                break
        idx = int(score.masked_fill(~avail, float("-inf")).reshape(-1).argmax())
        y, x = divmod(idx, w)
        win = torch.zeros_like(free)
        win[max(0, y - label) : y + label + 1, max(0, x - label) : x + label + 1] = True
        new = (win & free & ~taken).reshape(-1)
        new &= new.cumsum(0) <= quota - int(taken.sum())
        taken |= new.view(h, w)
        avail[max(0, y - block) : y + block + 1, max(0, x - block) : x + block + 1] = False
        avail &= ~taken
    return taken


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize(("block", "label"), [(0, 0), (1, 0), (3, 0), (2, 1), (4, 2)])
def test_sweeps_pick_what_the_loop_picks(seed: int, block: int, label: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    score = (torch.rand(2, 13, 17, generator=gen) * 6).floor()  # many ties
    free = torch.rand(2, 13, 17, generator=gen) > 0.2
    eligible = free & ~dilate(~free, 1) if seed % 2 else free
    quotas = torch.randint(1, 120, (2,), generator=gen)
    got = greedy_select(score, eligible, free, quotas, block, label)
    for i in range(2):
        want = _loop(score[i], eligible[i], free[i], int(quotas[i]), block, label)
        assert torch.equal(got[i], want)


def test_ranks_break_ties_in_raster_order() -> None:
    assert ranks(torch.tensor([[1.0, 2.0], [2.0, 0.0]])).tolist() == [[1.0, 3.0], [2.0, 0.0]]


def test_sweep_takes_every_peak_until_no_candidate_is_left() -> None:
    rank = ranks(torch.arange(5.0).view(1, 5))
    got = sweep(rank, torch.ones(1, 5, dtype=torch.bool), 1)
    assert got.tolist() == [[True, False, True, False, True]]  # 4, then 2, then 0
