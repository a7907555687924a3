"""Greedy window blanking by sweeps of peaks == RIPU's pick-by-pick loop."""

from __future__ import annotations

import pytest
import torch

from trainer.selection.greedy import box_sum, dilate, greedy_select, keys, sweep


def _loop(score, eligible, free, quota, block, label):
    """RIPU's loop for one image: argmax of the keys (ties broken as ``keys``), label, blank."""
    h, w = score.shape
    score = keys(score)
    taken = torch.zeros_like(free)
    avail = eligible & free
    while int(taken.sum()) < quota:
        if not avail.any():
            avail = free & ~taken
            if not avail.any():
                break
        idx = int(score.masked_fill(~avail, torch.iinfo(torch.int64).min).reshape(-1).argmax())
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
@pytest.mark.parametrize(("block", "label"), [(0, 0), (1, 0), (3, 0), (2, 1), (4, 2), (6, 0)])
def test_sweeps_pick_what_the_loop_picks(seed: int, block: int, label: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    score = (torch.rand(2, 13, 17, generator=gen) * 6).floor()  # many ties
    if seed % 3 == 2:  # smooth: long chains of windows, every best at a cell's border
        score = torch.nn.functional.interpolate(score[None], size=(13, 17), mode="bilinear")[0]
        score = score + torch.linspace(0, 3, 17)
    free = torch.rand(2, 13, 17, generator=gen) > 0.2
    eligible = free & ~dilate(~free, 1) if seed % 2 else free
    quotas = torch.randint(1, 120, (2,), generator=gen)
    got = greedy_select(score, eligible, free, quotas, block, label)
    for i in range(2):
        want = _loop(score[i], eligible[i], free[i], int(quotas[i]), block, label)
        assert torch.equal(got[i], want)


def test_keys_order_by_score_and_break_ties_by_a_fixed_shuffle() -> None:
    k = keys(torch.tensor([[1.0, 2.0], [2.0, -0.5]]))
    assert k[0, 0] < k[0, 1] and k[0, 0] < k[1, 0] and k[1, 1] < k[0, 0] and k[0, 1] != k[1, 0]
    flat = keys(torch.zeros(64, 128)).reshape(-1)
    assert flat.unique().numel() == flat.numel()  # unique
    assert torch.equal(flat, keys(torch.zeros(64, 128)).reshape(-1))  # fixed
    assert not torch.equal(flat.argsort(), torch.arange(64 * 128))  # not raster order
    scores = torch.tensor([-3.0, -1e-9, 0.0, 1e-9, 2.5, float("inf")])
    assert torch.equal(keys(scores.view(1, -1)).argsort(), torch.arange(6).view(1, -1))


def test_box_sum_counts_the_in_image_window() -> None:
    x = torch.arange(12).view(3, 4)
    got = box_sum(x, 1)
    assert got[0, 0] == 0 + 1 + 4 + 5 and got[1, 1] == x[:3, :3].sum()
    assert got[2, 3] == 10 + 11 + 6 + 7
    m = torch.zeros(5, 6, dtype=torch.bool)
    m[0, 0] = True
    assert dilate(m, 2).sum() == 9 and dilate(m, 2)[2, 2] and not dilate(m, 2)[3, 0]


def test_a_plateau_resolves_in_a_few_passes(monkeypatch) -> None:
    import trainer.selection.greedy as greedy

    calls = []
    real = greedy._peaks
    monkeypatch.setattr(greedy, "_peaks", lambda *a: calls.append(1) or real(*a))
    ys, _, _ = sweep(keys(torch.zeros(64, 128)), torch.ones(64, 128, dtype=torch.bool), 2)
    assert ys.numel() > 300 and len(calls) < 30  # raster order: 64 passes


def test_sweep_takes_every_peak_until_no_candidate_is_left() -> None:
    key = keys(torch.arange(5.0).view(1, 5))
    ys, xs, k = sweep(key, torch.ones(1, 5, dtype=torch.bool), 1)
    assert xs.tolist() == [4, 2, 0] and ys.tolist() == [0, 0, 0]  # 4, then 2, then 0
    assert torch.equal(k, key[0, [4, 2, 0]])


def test_a_sweep_stops_once_the_sure_picks_are_enough() -> None:
    key = keys(torch.arange(40.0).view(1, 40))
    ys, xs, _ = sweep(key, torch.ones(1, 40, dtype=torch.bool), 1, lambda y, x: y.numel() >= 3)
    assert xs.tolist()[:3] == [39, 37, 35] and xs.numel() < 20


def test_box_sum_with_a_window_wider_than_the_image() -> None:
    x = torch.arange(6).view(2, 3)
    assert torch.equal(box_sum(x, 5), torch.full((2, 3), 15))
    assert torch.equal(box_sum(x, 0), x)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize(("block", "label"), [(2, 0), (3, 1), (7, 0)])
def test_sweeps_pick_what_the_loop_picks_over_many_cells(seed: int, block: int, label: int) -> None:
    """Images of many cells, smooth scores with plateaus, quotas that need several sweeps."""
    gen = torch.Generator().manual_seed(100 + seed)
    low = torch.rand(1, 1, 5, 6, generator=gen)
    score = torch.nn.functional.interpolate(low, size=(37, 53), mode="bilinear")[0]
    score = (score * 8).round() / 8  # plateaus
    free = torch.rand(1, 37, 53, generator=gen) > 0.1
    eligible = free & ~dilate(~free, block)
    quotas = torch.tensor([int(torch.randint(50, 700, (1,), generator=gen))])
    got = greedy_select(score, eligible, free, quotas, block, label)
    assert torch.equal(got[0], _loop(score[0], eligible[0], free[0], int(quotas[0]), block, label))


def _capped_loop(score, eligible, free, quota, block, cls, cap):
    """The loop with class caps: the whole first sweep in rank order, a pick dropped once its
    class has ``cap`` picks, cut at the quota; then fresh sweeps without caps (:func:`_loop`)."""
    key, w = keys(score), score.shape[1]
    avail, picks = eligible & free, []
    while avail.any():
        idx = int(key.masked_fill(~avail, torch.iinfo(torch.int64).min).reshape(-1).argmax())
        y, x = divmod(idx, w)
        picks.append((y, x))
        avail[max(0, y - block) : y + block + 1, max(0, x - block) : x + block + 1] = False
    taken, count = torch.zeros_like(free), [0] * (int(cls.max()) + 1)
    for y, x in picks:
        count[int(cls[y, x])] += 1
        if count[int(cls[y, x])] <= cap and int(taken.sum()) < quota:
            taken[y, x] = True
    rest = free & ~taken
    return taken | _loop(score, rest, rest, quota - int(taken.sum()), block, 0)


@pytest.mark.parametrize("seed", range(6))
def test_class_caps_hold_in_the_first_sweep_only(seed: int) -> None:
    gen = torch.Generator().manual_seed(200 + seed)
    score = (torch.rand(1, 19, 23, generator=gen) * 5).floor()
    free = torch.rand(1, 19, 23, generator=gen) > 0.15
    cls = torch.randint(0, 3, (1, 19, 23), generator=gen)
    cap, quota, block = 1 + seed % 3, int(torch.randint(3, 200, (1,), generator=gen)), 1 + seed % 3
    caps = torch.tensor([cap])
    got = greedy_select(score, free, free, torch.tensor([quota]), block, 0, cls, caps)
    assert torch.equal(got[0], _capped_loop(score[0], free[0], free[0], quota, block, cls[0], cap))


@pytest.mark.parametrize("seed", range(2))
@pytest.mark.parametrize("block", [2, 5])
@pytest.mark.parametrize("budget", [0.001, 0.017, 0.068, 0.168])
def test_visits_at_every_table_budget_pick_what_the_loop_picks(
    seed: int, block: int, budget: float
) -> None:
    """RIPU's rounds as the policies run them: 6 visits of 2 images at a Table I budget, the
    asked pixels blanked in later visits (eligible = unasked, not within ``block`` of an asked
    pixel); smooth scores with plateaus and noise, so that later visits need fresh sweeps
    (every eligible pixel blanked) and sweeps end on their tails of a few peaks."""
    gen = torch.Generator().manual_seed(300 + seed)
    low = torch.rand(2, 1, 6, 9, generator=gen)
    score = torch.nn.functional.interpolate(low, size=(40, 72), mode="bilinear")[:, 0]
    score = (score * 6).round() / 6 + 0.05 * (torch.rand(2, 40, 72, generator=gen) > 0.7)
    unasked = torch.ones(2, 40, 72, dtype=torch.bool)
    total = round(budget * 40 * 72)
    for visit in range(6):
        quotas = torch.tensor([total // 6 + (visit < total % 6), total // 6 + 1])
        eligible = unasked & ~dilate(~unasked, block)
        got = greedy_select(score, eligible, unasked, quotas, block)
        for i in range(2):
            want = _loop(score[i], eligible[i], unasked[i], int(quotas[i]), block, 0)
            assert torch.equal(got[i], want), (visit, i)
        unasked &= ~got


def test_a_sweep_asks_enough_only_once_it_has_the_picks_it_needs() -> None:
    key = keys(torch.arange(40.0).view(1, 40))
    asked = []
    enough = lambda y, x: asked.append(y.numel()) or y.numel() >= 3  # noqa: E731
    ys, xs, _ = sweep(key, torch.ones(1, 40, dtype=torch.bool), 1, enough, need=3)
    assert xs.tolist()[:3] == [39, 37, 35] and min(asked) >= 3
