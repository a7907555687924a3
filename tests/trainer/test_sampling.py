"""Selectors, RIPU, Algorithm 1 and adaptive sampling."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from trainer.constants import Group
from trainer.sampling import (
    ActiveSampler,
    AlgorithmOneState,
    adaptive_sample,
    per_iteration_quota,
    region_impurity,
    ripu_score,
    top_k_select,
    uniform_select,
)

SHAPE = (2, 6, 7)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@settings(max_examples=80, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), k=st.integers(-2, 100), density=st.floats(0, 1))
def test_uniform_select_exact_count_within_candidates(seed: int, k: int, density: float) -> None:
    g = _gen(seed)
    candidates = torch.rand(SHAPE, generator=g) < density
    mask = uniform_select(candidates, k, g)
    assert mask.dtype == torch.bool and mask.shape == candidates.shape
    assert int(mask.sum()) == max(0, min(k, int(candidates.sum())))
    assert not (mask & ~candidates).any()


def test_uniform_select_is_reproducible_and_covers_all() -> None:
    candidates = torch.ones(1, 4, 4, dtype=torch.bool)
    a = uniform_select(candidates, 3, _gen(1))
    assert torch.equal(a, uniform_select(candidates, 3, _gen(1)))
    seen = torch.zeros_like(candidates)
    g = _gen(2)
    for _ in range(60):
        seen |= uniform_select(candidates, 3, g)
    assert seen.all()


def test_top_k_select_picks_highest_candidates() -> None:
    score = torch.tensor([[[0.9, 0.1, 0.8, 0.7, 0.95]]])
    candidates = torch.tensor([[[True, True, True, True, False]]])
    assert top_k_select(score, candidates, 2).tolist() == [[[True, False, True, False, False]]]
    assert int(top_k_select(score, candidates, 10).sum()) == 4
    assert int(top_k_select(score, candidates, 0).sum()) == 0


def test_region_impurity_by_hand() -> None:
    pred = torch.tensor([[[0, 0, 1], [0, 0, 1], [0, 0, 1]]])
    imp = region_impurity(pred, num_classes=4, kernel_size=3)
    assert imp[0, 0, 0].item() == 0.0  # neighbourhood {0,0,0,0}
    # centre: six 0s, three 1s
    expected = -(6 / 9 * math.log(6 / 9) + 3 / 9 * math.log(3 / 9)) / math.log(4)
    assert math.isclose(imp[0, 1, 1].item(), expected, rel_tol=1e-6)
    # corner (0, 2): {0, 1, 0, 1} -> entropy log 2
    assert math.isclose(imp[0, 0, 2].item(), math.log(2) / math.log(4), rel_tol=1e-6)
    assert torch.equal(
        region_impurity(torch.zeros(1, 3, 3, dtype=torch.long), 4), torch.zeros(1, 3, 3)
    )


def test_ripu_score_is_impurity_times_entropy() -> None:
    g = _gen(0)
    prob = torch.softmax(torch.randn(1, 3, 4, 4, generator=g), 1)
    pred = prob.argmax(1)
    score = ripu_score(prob, pred, 3)
    ent = -(prob * prob.log()).sum(1) / math.log(3)
    assert torch.allclose(score, region_impurity(pred, 3) * ent, atol=1e-6)


@pytest.mark.parametrize(
    ("remaining", "left", "expected"),
    [(10, 3, 4), (10, 0, 10), (10, 20, 1), (0, 5, 0), (-3, 5, 0), (9, 3, 3)],
)
def test_per_iteration_quota(remaining: int, left: int, expected: int) -> None:
    assert per_iteration_quota(remaining, left) == expected


def test_phase_boundaries() -> None:
    phase = ActiveSampler.phase
    assert phase(10, 4, 0) == "high"
    assert phase(10, 5, 0) == "medium"
    assert phase(10, 5, 4) == "medium"
    assert phase(10, 5, 5) == "done"
    assert phase(11, 5, 5) == "medium"  # the odd pixel goes to G_m
    assert phase(0, 0, 0) == "done"


def test_select_high_takes_half_of_unlabeled_high() -> None:
    groups = torch.full((1, 4, 4), Group.MEDIUM, dtype=torch.uint8)
    groups[0, 0] = Group.HIGH
    unlabeled = torch.ones(1, 4, 4, dtype=torch.bool)
    unlabeled[0, 0, 0] = False  # 3 unlabeled G_h pixels -> ceil(3/2) = 2
    mask, phase = ActiveSampler().select(groups, unlabeled, 100, 0, 0, 7, _gen(0))
    assert phase == "high" and int(mask.sum()) == 2
    assert (groups[mask] == Group.HIGH).all() and unlabeled[mask].all()
    mask, _ = ActiveSampler().select(groups, unlabeled, 100, 49, 0, 7, _gen(0))
    assert int(mask.sum()) == 1  # capped by M_e // 2 - spent_high


def test_select_medium_and_done() -> None:
    groups = torch.full((1, 4, 4), Group.MEDIUM, dtype=torch.uint8)
    unlabeled = torch.ones(1, 4, 4, dtype=torch.bool)
    mask, phase = ActiveSampler().select(groups, unlabeled, 10, 5, 2, 7, _gen(0))
    assert phase == "medium" and int(mask.sum()) == 3
    mask, phase = ActiveSampler().select(groups, unlabeled, 10, 5, 5, 7, _gen(0))
    assert phase == "done" and not mask.any()


def test_end_epoch_decays_but_not_below_pi_low() -> None:
    sampler = ActiveSampler(AlgorithmOneState(pi_high=1.0, pi_low=0.5, decay=0.9))
    assert math.isclose(sampler.end_epoch(), 0.9)
    for _ in range(20):
        sampler.end_epoch()
    assert sampler.state.pi_high == 0.5


@settings(max_examples=50, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    expected=st.integers(0, 120),
    quota=st.integers(0, 30),
    steps=st.integers(1, 25),
)
def test_algorithm_one_never_exceeds_budget(
    seed: int, expected: int, quota: int, steps: int
) -> None:
    g = _gen(seed)
    sampler = ActiveSampler(AlgorithmOneState(pi_high=0.9, pi_low=0.1))
    unlabeled = torch.ones(SHAPE, dtype=torch.bool)
    spent = {"high": 0, "medium": 0}
    for _ in range(steps):
        groups = torch.randint(0, 3, SHAPE, generator=g, dtype=torch.uint8)
        mask, phase = sampler.select(
            groups, unlabeled, expected, spent["high"], spent["medium"], quota, g
        )
        assert not (mask & ~unlabeled).any()
        if phase == "done":
            assert not mask.any()
        else:
            wanted = Group.HIGH if phase == "high" else Group.MEDIUM
            assert (groups[mask] == wanted).all()
            spent[phase] += int(mask.sum())
        unlabeled &= ~mask
        sampler.end_epoch()
        assert spent["high"] <= expected // 2
        assert spent["high"] + spent["medium"] <= expected
    assert int((~unlabeled).sum()) == spent["high"] + spent["medium"]


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


# --- bounded samplers: sample_per_group, uniform_select's thinning, device_generator ---------

import trainer.sampling as sampling_mod  # noqa: E402
from trainer.sampling import count_ids, device_generator, sample_per_group  # noqa: E402


def test_device_generator_is_the_generator_on_its_own_device() -> None:
    g = _gen(3)
    assert device_generator(g, "cpu") is g and device_generator(None, "cpu") is None


def test_count_ids_matches_bincount() -> None:
    ids = torch.randint(0, 7, (500,), generator=_gen(0))
    assert torch.equal(count_ids(ids, 9), torch.bincount(ids, minlength=9))


def _check_per_group(group, oks, caps, n_groups, idx, chosen) -> None:
    assert idx.dtype == torch.long and torch.equal(idx, torch.unique(idx))  # ascending, no dups
    assert idx.numel() == 0 or (0 <= int(idx.min()) and int(idx.max()) < group.numel())
    assert torch.stack(chosen).any(0).all()  # idx is the union of the draws
    for ok, cap, pick in zip(oks, caps, chosen, strict=True):
        assert ok[idx[pick]].all()
        got = torch.bincount(group[idx[pick]], minlength=n_groups)
        avail = torch.bincount(group[ok], minlength=n_groups)
        assert torch.equal(got, avail.clamp(max=max(cap, 0)))


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    n=st.integers(0, 3000),
    n_groups=st.integers(1, 6),
    caps=st.lists(st.integers(-1, 120), min_size=1, max_size=3),
    thin=st.booleans(),
)
def test_sample_per_group_exact_counts(seed, n, n_groups, caps, thin) -> None:
    """min(cap, available) per group and draw, subsets of ok, no duplicates; also with a
    thinning target so small that the exact fallback must kick in."""
    with pytest.MonkeyPatch.context() as mp:
        if thin:
            mp.setattr(sampling_mod, "thinning_target", lambda k: 0.5 * k + 1.0)
        g = _gen(seed)
        group = torch.randint(0, n_groups, (n,), generator=g)
        oks = [torch.rand(n, generator=g) < 0.7 for _ in caps]
        idx, chosen = sample_per_group(group, oks, caps, n_groups, g)
    _check_per_group(group, oks, caps, n_groups, idx, chosen)


@pytest.mark.parametrize("thin", [False, True])
def test_sample_per_group_is_uniform_within_each_group(thin: bool, monkeypatch) -> None:
    """Every ok item of a group is chosen with probability cap / n (also when the thinning
    is active: n > mu), and draws are independent of each other."""
    if thin:
        monkeypatch.setattr(sampling_mod, "thinning_target", lambda k: k + 2.0)
    group = torch.tensor([0] * 12 + [1] * 4)
    ok = torch.ones(16, dtype=torch.bool)
    ok[0] = False
    hits = torch.zeros(2, 16)
    both = 0
    g = _gen(0)
    trials = 3000
    for _ in range(trials):
        idx, (a, b) = sample_per_group(group, [ok, ok], [3, 3], 2, g)
        hits[0, idx[a]] += 1
        hits[1, idx[b]] += 1
        both += int((a & b & (idx == 5)).sum())
    freq = hits / trials
    assert freq[:, 0].eq(0).all()
    assert torch.allclose(freq[:, 1:12], torch.full((2, 11), 3 / 11), atol=0.04)
    assert torch.allclose(freq[:, 12:], torch.full((2, 4), 3 / 4), atol=0.04)
    assert abs(both / trials - (3 / 11) ** 2) < 0.03  # independent draws


def test_sample_per_group_large_group_touches_few() -> None:
    """A 200k-item group with cap 5: exactly 5 chosen, survivors far fewer than the group."""
    n = 200_000
    group = torch.zeros(n, dtype=torch.long)
    ok = torch.ones(n, dtype=torch.bool)
    idx, (pick,) = sample_per_group(group, [ok], [5], 1, _gen(1))
    assert idx.numel() == 5 and pick.all()


@pytest.mark.parametrize("rate", [None, 1.0])
def test_uniform_select_is_uniform(rate, monkeypatch) -> None:
    """Each of 10 candidates is chosen with probability k / 10, with the default thinning,
    with a thinning that is active (mu < n) and one that forces the exact fallback."""
    if rate is not None:
        monkeypatch.setattr(sampling_mod, "thinning_target", lambda k: k * rate)
    candidates = torch.zeros(1, 4, 5, dtype=torch.bool)
    candidates.view(-1)[::2] = True
    hits = torch.zeros(1, 4, 5)
    g = _gen(5)
    for _ in range(3000):
        m = uniform_select(candidates, 4, g)
        assert int(m.sum()) == 4 and not (m & ~candidates).any()
        hits += m.float()
    freq = hits.view(-1)[::2] / 3000
    assert torch.allclose(freq, torch.full_like(freq, 0.4), atol=0.04)
    assert hits.view(-1)[1::2].eq(0).all()


def test_uniform_select_large_mask() -> None:
    candidates = torch.rand(2, 256, 512, generator=_gen(0)) < 0.5
    m = uniform_select(candidates, 1000, _gen(1))
    assert int(m.sum()) == 1000 and not (m & ~candidates).any()
