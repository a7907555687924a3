"""Algorithm 1 (phases, footnote 3, the decay), RIPU and adaptive sampling."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from trainer.constants import Group
from trainer.selection.sampling import (
    ActiveSampler,
    AlgorithmOneState,
    adaptive_sample,
)
from trainer.selection.views import BudgetView, QueryWindow, ScoreMaps, per_iteration_quota

SHAPE = (2, 6, 7)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _select(
    sampler: ActiveSampler,
    groups: torch.Tensor,
    unasked: torch.Tensor,
    iteration: int,
    window: QueryWindow,
    spent: dict[str, int],
    gen: torch.Generator,
) -> tuple[torch.Tensor, str]:
    """Algorithm 1 as the benchmark loop calls it, on flat scores (the groups decide)."""
    maps = ScoreMaps(torch.zeros(groups.shape), groups, torch.ones(1), unasked)
    return sampler.select(maps, BudgetView.at(window, iteration, spent), gen)


@pytest.mark.parametrize(
    ("remaining", "left", "expected"),
    [(10, 3, 4), (10, 0, 10), (10, 20, 1), (0, 5, 0), (-3, 5, 0), (9, 3, 3)],
)
def test_per_iteration_quota(remaining: int, left: int, expected: int) -> None:
    assert per_iteration_quota(remaining, left) == expected


def test_phase_boundaries() -> None:
    def phase(expected: int, high: int, medium: int) -> str:
        return BudgetView(expected, {"high": high, "medium": medium}).phase()

    assert phase(10, 4, 0) == "high"
    assert phase(10, 5, 0) == "medium"
    assert phase(10, 5, 4) == "medium"
    assert phase(10, 5, 5) == "done"
    assert phase(11, 5, 5) == "medium"  # the odd pixel goes to G_m
    assert phase(0, 0, 0) == "done"
    window = QueryWindow(10, query_until=4, high_until=2, pass_length=1, high_cap=9)
    assert BudgetView(10, {}, window, 1).phase() == "high"
    assert BudgetView(10, {}, window, 2).phase() == "medium"  # past the high window
    assert BudgetView(10, {}, window, 4).phase() == "done"  # past the query window


def test_query_window_plan() -> None:
    # 16 passes of 25 batches, queries in the first 6: high in the first 75 iterations, each
    # taking at most ceil(ceil(50 / 75) * 2) = 2 pixels
    assert QueryWindow.plan(100, 400, 25, 6 / 16) == QueryWindow(100, 150, 75, 25, 2)
    # the cap spreads M_e / 2 over the high window, times the factor
    assert QueryWindow.plan(10_000, 400, 25, 6 / 16, 1.5).high_cap == math.ceil(67 * 1.5)
    assert QueryWindow.plan(7, 8, 3, 0.5) == QueryWindow(7, 4, 2, 3, 4)
    assert QueryWindow.plan(7, 0, 0, 0.6) == QueryWindow(7, 1, 1, 1, 6)


WINDOW = QueryWindow(expected=100, query_until=10, high_until=5, pass_length=2, high_cap=1000)


def test_select_high_takes_half_of_unasked_high() -> None:
    groups = torch.full((1, 4, 4), Group.MEDIUM, dtype=torch.uint8)
    groups[0, 0] = Group.HIGH
    unasked = torch.ones(1, 4, 4, dtype=torch.bool)
    unasked[0, 0, 0] = False  # 3 unasked G_h pixels -> ceil(3/2) = 2
    mask, phase = _select(ActiveSampler(), groups, unasked, 0, WINDOW, {}, _gen(0))
    assert phase == "high" and int(mask.sum()) == 2
    assert (groups[mask] == Group.HIGH).all() and unasked[mask].all()
    mask, _ = _select(ActiveSampler(), groups, unasked, 0, WINDOW, {"high": 49}, _gen(0))
    assert int(mask.sum()) == 1  # capped by M_e // 2 - spent_high


def test_select_high_takes_at_most_the_per_iteration_cap() -> None:
    groups = torch.full((2, 16, 16), Group.HIGH, dtype=torch.uint8)  # 512 unasked G_h pixels
    unasked = torch.ones(2, 16, 16, dtype=torch.bool)
    window = QueryWindow.plan(1000, 160, 10, 0.5)  # high window 40 iterations
    assert window.high_cap == math.ceil(500 / 40) * 2 == 26
    sampler, spent, taken = ActiveSampler(), {"high": 0}, []
    for it in range(window.high_until):
        mask, phase = _select(sampler, groups, unasked, it, window, spent, _gen(it))
        if phase != "high":
            break
        taken.append(int(mask.sum()))
        spent["high"] += taken[-1]
        unasked &= ~mask
    # half of the unasked G_h (256 at first), but never more than the cap; then the last
    # G_h pixels: half of the 44 left, then the 10 that complete M_e / 2
    assert taken == [26] * 18 + [22, 10]
    assert spent["high"] == 500  # the cap still lets the high window spend M_e / 2


def test_select_decays_pi_high_once_per_pass_of_the_high_phase() -> None:
    groups = torch.full((1, 4, 4), Group.HIGH, dtype=torch.uint8)
    unasked = torch.ones(1, 4, 4, dtype=torch.bool)
    sampler = ActiveSampler(AlgorithmOneState(pi_high=1.0, pi_low=0.1, decay=0.5), False)
    seen = []
    for it in range(4):
        _, phase = _select(sampler, groups, unasked, it, WINDOW, {}, _gen(it))
        seen.append((phase, sampler.state.pi_high))
    assert seen == [("high", 1.0), ("high", 0.5), ("high", 0.5), ("high", 0.25)]


def test_default_schedule_decays_pi_high_once_per_pass_of_the_high_window() -> None:
    from trainer.config import TrainConfig
    from trainer.loop.schedule import new_loop_state

    cfg = TrainConfig(high_catch_up=False)  # the per-pass decay alone
    state = new_loop_state(cfg, 10**6, 3, target_images=30)  # 15 batches a pass
    window, sampler = state.window, state.sampler
    assert window.pass_length == 15 and window.high_until == 3 * 15
    sampler.state = AlgorithmOneState(pi_high=1.0, pi_low=0.0, decay=cfg.decay)
    groups = torch.full((1, 4, 4), Group.HIGH, dtype=torch.uint8)
    seen = []
    for it in range(window.query_until):
        _select(sampler, groups, torch.ones(1, 4, 4, dtype=torch.bool), it, window, {}, _gen(it))
        seen.append(sampler.state.pi_high)
    # unchanged within a pass, x0.9 at the end of each of the 3 high passes, then frozen
    assert seen[:14] == [1.0] * 14 and math.isclose(seen[14], 0.9)
    assert math.isclose(seen[29], 0.81) and math.isclose(seen[44], 0.9**3)
    assert seen[44:] == [seen[44]] * (window.query_until - 44)


def _high_window_run(catch_up: bool, pi_low: float = 0.1) -> tuple[int, float]:
    """One 10x10 image with scores 0.01 ... 1.00, pi_high 0.95 (G_h: the top 5 pixels),
    M_e = 40 (M_e/2 = 20) over a high window of 2 visits, each ending a pass. The groups are
    made with the thresholds of the moment, as the loop does. Returns (spent from G_h,
    pi_high at the end)."""
    from trainer.selection.uncertainty import partition

    score = torch.arange(1, 101, dtype=torch.float32).view(1, 10, 10) / 100
    sampler = ActiveSampler(AlgorithmOneState(0.95, pi_low, 0.9), catch_up=catch_up)
    window = QueryWindow(expected=40, query_until=4, high_until=2, pass_length=1, high_cap=20)
    unasked, spent = torch.ones(1, 10, 10, dtype=torch.bool), {"high": 0}
    for it in range(window.high_until):
        s = sampler.state
        maps = ScoreMaps(score, partition(score, s.pi_high, s.pi_low), torch.ones(1), unasked)
        mask, phase = sampler.select(maps, BudgetView.at(window, it, spent), _gen(it))
        assert phase == "high" and not (mask & ~unasked).any()
        spent["high"] += int(mask.sum())
        unasked &= ~mask
    return spent["high"], sampler.state.pi_high


def test_high_phase_decays_pi_high_until_g_h_supplies_half_the_budget() -> None:
    # decayed once a pass only (the old rule): G_h holds 5, then 15 pixels; half of each
    # visit's gives 3 + 6 = 9 of the 20, and G_m would take the other 11
    assert _high_window_run(catch_up=False)[0] == 9
    # Alg. 1 line 7 "until M_a achieves M_e/2": visit 1 wants 10 and decays pi_high twice
    # (G_h 24, takes 12), its pass's end once more (G_h 31), visit 2 takes the 8 left and
    # decays it at its pass's end: 4 decays in all, against 2
    spent, pi_high = _high_window_run(catch_up=True)
    assert spent == 20 and math.isclose(pi_high, 0.95 * 0.9**4)
    assert math.isclose(_high_window_run(catch_up=False)[1], 0.95 * 0.9**2)


def test_high_phase_catch_up_stops_at_pi_low_and_takes_what_g_h_holds() -> None:
    # pi_low 0.92: G_h can never hold more than the 8 pixels above it; the catch-up stops
    # there (pi_high == pi_low) and the high phase gets 4 + 2 (half of G_h each visit)
    spent, pi_high = _high_window_run(catch_up=True, pi_low=0.92)
    assert spent == 6 and pi_high == 0.92


def test_select_medium_spreads_the_rest_and_tops_up_from_high() -> None:
    groups = torch.full((1, 4, 4), Group.MEDIUM, dtype=torch.uint8)
    unasked = torch.ones(1, 4, 4, dtype=torch.bool)
    window = QueryWindow(expected=20, query_until=6, high_until=3, pass_length=1, high_cap=99)
    spent = {"high": 10, "medium": 2}
    # the high share is spent: the 8 left go to G_m over the 3 iterations from high_until on
    mask, phase = _select(ActiveSampler(), groups, unasked, 1, window, spent, _gen(0))
    assert phase == "medium" and int(mask.sum()) == 3 and (groups[mask] == Group.MEDIUM).all()
    # the high phase ran past its window (iteration >= high_until): the rest goes to G_m too
    mask, phase = _select(ActiveSampler(), groups, unasked, 5, window, {"high": 1}, _gen(0))
    assert phase == "medium" and int(mask.sum()) == 16  # quota 19, capped by the 16 pixels
    groups[0, :2] = Group.HIGH  # 7 G_m pixels left, so 12 of quota 19 are topped up ...
    groups[0, 2, 0] = Group.LOW  # ... from G_h first, then from the highest scores left
    unasked[0, 3] = False  # 11 unasked in G_m u G_h, one in G_l
    mask, _ = _select(ActiveSampler(), groups, unasked, 5, window, {"high": 1}, _gen(0))
    assert int(mask.sum()) == 12 and mask[0, 2, 0] and not (mask & ~unasked).any()
    unasked[0, 2, 0] = False  # nothing left in G_l: G_m u G_h are all it can take
    mask, _ = _select(ActiveSampler(), groups, unasked, 5, window, {"high": 1}, _gen(0))
    assert int(mask.sum()) == 11 and not (groups[mask] == Group.LOW).any()
    mask, phase = _select(ActiveSampler(), groups, unasked, 6, window, {}, _gen(0))
    assert phase == "done" and not mask.any()  # past the query window


def test_end_epoch_decays_but_not_below_pi_low() -> None:
    sampler = ActiveSampler(AlgorithmOneState(pi_high=1.0, pi_low=0.5, decay=0.9))
    assert math.isclose(sampler.end_epoch(), 0.9)
    for _ in range(20):
        sampler.end_epoch()
    assert sampler.state.pi_high == 0.5


def test_calibrate_sets_the_thresholds_at_quantiles() -> None:
    sampler = ActiveSampler()
    sampler.calibrate(torch.arange(101.0).view(1, 1, 101), 0.99, 0.5)
    assert (sampler.state.pi_high, sampler.state.pi_low) == (99.0, 50.0)


def _algorithm_one_count(
    groups: torch.Tensor, unasked: torch.Tensor, it: int, window: QueryWindow, spent: dict
) -> tuple[str, int]:
    """The pixels Algorithm 1 asks in one call, written out from lines 5-9 and footnote 3
    (not through BudgetView): G_h while M_a < M_e // 2 in the high window, half of its unasked
    pixels within the cap; then the rest of M_e spread over the window's iterations left."""
    if it >= window.query_until:
        return "done", 0
    half = window.expected // 2
    if spent["high"] < half and it < window.high_until:
        n_high = int(((groups == Group.HIGH) & unasked).sum())
        return "high", min(math.ceil(n_high / 2), half - spent["high"], window.high_cap)
    left = window.expected - spent["high"] - spent["medium"]
    if left <= 0:
        return "done", 0
    iterations_left = max(1, window.query_until - max(it, window.high_until))
    return "medium", min(math.ceil(left / iterations_left), int(unasked.sum()))


@settings(max_examples=50, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    expected=st.integers(0, 120),
    iterations=st.integers(1, 30),
    steps=st.integers(1, 25),
)
def test_algorithm_one_asks_exactly_its_quota_and_spends_the_budget(
    seed: int, expected: int, iterations: int, steps: int
) -> None:
    """Every call asks exactly the count of Algorithm 1 (a selector that asks nothing, or
    too much, fails), never an asked pixel; M_e is spent to the pixel by the window's end."""
    g = _gen(seed)
    sampler = ActiveSampler(AlgorithmOneState(pi_high=0.9, pi_low=0.1))
    window = QueryWindow.plan(expected, iterations, 3, 0.6)
    unasked = torch.ones(SHAPE, dtype=torch.bool)
    spent = {"high": 0, "medium": 0}
    for it in range(steps):
        groups = torch.randint(0, 3, SHAPE, generator=g, dtype=torch.uint8)
        want_phase, want = _algorithm_one_count(groups, unasked, it, window, spent)
        mask, phase = _select(sampler, groups, unasked, it, window, spent, g)
        assert (phase, int(mask.sum())) == (want_phase, want)
        assert not (mask & ~unasked).any()
        if phase == "high":
            assert (groups[mask] == Group.HIGH).all()
        elif (groups[mask] == Group.LOW).any():  # the last resort: G_m u G_h all taken
            assert not ((groups != Group.LOW) & unasked & ~mask).any()
        if phase != "done":
            spent[phase] += int(mask.sum())
        unasked &= ~mask
        assert spent["high"] <= expected // 2
        assert spent["high"] + spent["medium"] <= expected
    assert int((~unasked).sum()) == spent["high"] + spent["medium"]
    medium_window = window.query_until > window.high_until
    if steps >= window.query_until and medium_window and expected <= unasked.numel():
        assert spent["high"] + spent["medium"] == expected  # every pixel of M_e, no fewer


def test_adaptive_sample_by_hand() -> None:
    groups = torch.full((1, 4, 4), Group.LOW, dtype=torch.uint8)
    labeled = torch.zeros(1, 4, 4, dtype=torch.bool)
    label_group = torch.full((1, 4, 4), 255, dtype=torch.long)
    labeled[0, 0, :3] = True
    label_group[0, 0, :3] = Group.HIGH
    labeled[0, 1, 0] = True
    label_group[0, 1, 0] = Group.MEDIUM
    masks = adaptive_sample(groups, labeled, label_group, None, _gen(0))
    assert int(masks["high"].sum()) == 3 and int(masks["medium"].sum()) == 1
    assert int(masks["low"].sum()) == 3 and not (masks["low"] & labeled).any()
    masks = adaptive_sample(groups, labeled, label_group, 1, _gen(0))
    assert int(masks["high"].sum()) == 3  # labeled groups are kept whole
    empty = torch.zeros_like(labeled)
    masks = adaptive_sample(groups, empty, label_group, None, _gen(0), min_low=5)
    assert int(masks["low"].sum()) == 5 and not masks["high"].any()
    masks = adaptive_sample(groups, empty, label_group, None, _gen(0))
    assert not masks["low"].any()  # by default a batch without labels takes no pseudo label


def test_pseudo_only_floor_is_a_share_of_the_batch() -> None:
    from trainer.config import TrainConfig
    from trainer.selection.sampling import min_low

    on = TrainConfig(pseudo_only_batches=True)
    assert min_low(on, 2 * 64 * 128) == 64  # the old min_low_samples at the bundled size
    assert min_low(on, 2 * 1024 * 2048) == 16_384  # the same share at Cityscapes' size
    assert min_low(TrainConfig(), 2 * 64 * 128) == 0  # off by default


def test_no_pseudo_only_batch_by_default() -> None:
    from trainer.config import TrainConfig
    from trainer.selection.sampling import target_masks

    groups = torch.full((2, 4, 4), Group.LOW, dtype=torch.uint8)
    none = torch.full((2, 4, 4), 255, dtype=torch.long)
    masks = target_masks(TrainConfig(), groups, none, none, _gen(0))
    assert not any(m.any() for m in masks.values())
    masks = target_masks(
        TrainConfig(pseudo_only_batches=True, min_low_share=7 / 32), groups, none, none, _gen(0)
    )
    assert int(masks["low"].sum()) == 7 and not masks["high"].any()
    labels = none.clone()
    labels[0, 0, 0] = 1  # one true label: AS draws as many pseudo labels as the larger group
    masks = target_masks(TrainConfig(), groups, labels, none, _gen(0))
    assert int(masks["medium"].sum()) == 1 and int(masks["low"].sum()) == 1


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), k=st.one_of(st.none(), st.integers(0, 40)))
def test_adaptive_sample_invariants(seed: int, k: int | None) -> None:
    g = _gen(seed)
    groups = torch.randint(0, 3, SHAPE, generator=g, dtype=torch.uint8)
    labeled = torch.rand(SHAPE, generator=g) < 0.1
    label_group = torch.where(labeled, torch.randint(1, 3, SHAPE, generator=g), 255)
    masks = adaptive_sample(groups, labeled, label_group, k, g, min_low=8)
    assert torch.equal(masks["high"] | masks["medium"], labeled)
    assert not (masks["high"] & masks["medium"]).any()
    assert not (masks["low"] & labeled).any()
    assert (groups[masks["low"]] == Group.LOW).all()
    n_low = int(((groups == Group.LOW) & ~labeled).sum())
    if k is None:
        nh, nm = int(masks["high"].sum()), int(masks["medium"].sum())
        k = max(nh, nm) or 8
    assert int(masks["low"].sum()) == min(k, n_low)
