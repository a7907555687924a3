"""Greedy window blanking by sweeps of peaks == RIPU's pick-by-pick loop."""

from __future__ import annotations

import pytest
import torch

from trainer.selection.greedy import dilate, greedy_select, ranks, sweep


def _loop(score, eligible, free, quota, block, label):
    """RIPU's loop for one image: argmax of the ranks (ties broken as ``ranks``), label, blank."""
    h, w = score.shape
    score = ranks(score)
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


def test_ranks_order_by_score_and_break_ties_by_a_fixed_shuffle() -> None:
    r = ranks(torch.tensor([[1.0, 2.0], [2.0, 0.0]]))
    assert r[0, 0] == 1.0 and r[1, 1] == 0.0 and {r[0, 1].item(), r[1, 0].item()} == {2.0, 3.0}
    flat = ranks(torch.zeros(64, 128)).reshape(-1)
    assert torch.equal(flat.sort().values, torch.arange(64 * 128.0))  # unique
    assert torch.equal(flat, ranks(torch.zeros(64, 128)).reshape(-1))  # fixed
    assert not torch.equal(flat, torch.arange(64 * 128 - 1, -1, -1.0))  # not raster order


def test_a_plateau_resolves_in_a_few_passes(monkeypatch) -> None:
    import trainer.selection.greedy as greedy

    calls = []
    real = greedy.box_max
    monkeypatch.setattr(greedy, "box_max", lambda x, r: calls.append(r) or real(x, r))
    picks = sweep(ranks(torch.zeros(64, 128)), torch.ones(64, 128, dtype=torch.bool), 2)
    assert int(picks.sum()) > 300 and len(calls) < 30  # raster order: 64 passes


def test_sweep_takes_every_peak_until_no_candidate_is_left() -> None:
    rank = ranks(torch.arange(5.0).view(1, 5))
    got = sweep(rank, torch.ones(1, 5, dtype=torch.bool), 1)
    assert got.tolist() == [[True, False, True, False, True]]  # 4, then 2, then 0
