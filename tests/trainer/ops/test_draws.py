"""Random draws: uniform and top-k selection, capped per-group draws, device generators."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import trainer.ops.draws as draws_mod
from trainer.ops.draws import (
    count_ids,
    device_generator,
    sample_per_group,
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


# --- bounded samplers: sample_per_group, uniform_select's thinning, device_generator ---------


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
            mp.setattr(draws_mod, "thinning_target", lambda k: 0.5 * k + 1.0)
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
        monkeypatch.setattr(draws_mod, "thinning_target", lambda k: k + 2.0)
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
        monkeypatch.setattr(draws_mod, "thinning_target", lambda k: k * rate)
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
