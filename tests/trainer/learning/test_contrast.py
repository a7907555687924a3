"""Eq. 9-11 on hand-computed embeddings, plus the MCU levels and their invariants.

The per-pair definitions (p2p_loss, c2c_loss, mcu_loss_reference) are in contrast_reference.py;
the production loss, trainer.learning.contrast.mcu_loss, is checked against them.
"""

from __future__ import annotations

import math
from dataclasses import replace
from functools import partial

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.trainer.learning.contrast_reference import (
    PixelSet,
    batch_of,
    c2c_loss,
    cap_per_class,
    class_centers,
    mcu_loss_reference,
    p2p_loss,
    select_anchors,
    unit_pairs,
)
from trainer.config import TrainConfig
from trainer.learning.contrast import MCUSettings, PixelBatch, cap_mask, mcu_loss, normalize

LAM = 0.5
A = torch.tensor([[1.0, 0.0]])
A_LAB = torch.tensor([0])
S = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.6, 0.8], [0.0, 1.0]])
S_LAB = torch.tensor([0, 1, 0, 255])


def _nll(pos: float, negs: list[float]) -> float:
    return -math.log(math.exp(pos) / (math.exp(pos) + sum(math.exp(n) for n in negs)))


def test_p2p_plain_by_hand() -> None:
    expected = (_nll(1 / LAM, [0.8 / LAM]) + _nll(0.6 / LAM, [0.8 / LAM])) / 2
    for mode in ("none", "negatives"):  # no weight -> plain InfoNCE either way
        got = p2p_loss(A, A_LAB, S, S_LAB, LAM, None, mode)
        assert math.isclose(got.item(), expected, rel_tol=1e-6)


def test_p2p_weight_modes_by_hand() -> None:
    w = torch.tensor([[0.2, 0.5], [0.1, 0.0]])
    neg = 0.8 / LAM
    expected = (_nll(1 / LAM, [neg * 1.5]) + _nll(0.6 / LAM, [neg * 1.5])) / 2
    got = p2p_loss(A, A_LAB, S, S_LAB, LAM, w, "negatives")
    assert math.isclose(got.item(), expected, rel_tol=1e-6)
    expected = (_nll(0.2 / LAM, [neg * 0.5]) + _nll(0.2 * 0.6 / LAM, [neg * 0.5])) / 2
    got = p2p_loss(A, A_LAB, S, S_LAB, LAM, w, "paper")
    assert math.isclose(got.item(), expected, rel_tol=1e-6)
    with pytest.raises(ValueError):
        p2p_loss(A, A_LAB, S, S_LAB, LAM, w, "bogus")  # type: ignore[arg-type]


def test_p2p_normalizes_inside_and_ignores_255() -> None:
    base = p2p_loss(A, A_LAB, S, S_LAB, LAM)
    scaled = p2p_loss(3 * A, A_LAB, S * torch.tensor([[2.0], [5.0], [0.5], [1.0]]), S_LAB, LAM)
    assert torch.allclose(base, scaled)
    ignored = p2p_loss(torch.cat([A, A]), torch.tensor([0, 255]), S, S_LAB, LAM)
    assert torch.allclose(base, ignored)


def test_p2p_without_pairs_is_zero_with_grad() -> None:
    a = torch.randn(2, 3, requires_grad=True)
    loss = p2p_loss(a, torch.tensor([0, 0]), torch.randn(2, 3), torch.tensor([1, 2]), LAM)
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert torch.equal(a.grad, torch.zeros_like(a))
    empty = p2p_loss(a[:0], torch.tensor([], dtype=torch.long), S, S_LAB, LAM)
    assert empty.item() == 0.0


def test_p2p_without_negatives_is_zero_and_finite_grad() -> None:
    a = torch.randn(1, 3, requires_grad=True)
    loss = p2p_loss(a, torch.tensor([0]), torch.randn(2, 3), torch.tensor([0, 0]), 0.07)
    loss.backward()
    # -log H = log(exp(l+)) - l+ = 0 for every anchor, so the gradient is 0 too (not NaN)
    assert abs(loss.item()) < 1e-6 and torch.allclose(a.grad, torch.zeros_like(a), atol=1e-7)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    t=st.floats(0.1, 0.9),
    mode=st.sampled_from(["none", "negatives"]),
)
def test_p2p_falls_when_positives_approach_and_rises_when_negatives_do(
    seed: int, t: float, mode: str
) -> None:
    g = torch.Generator().manual_seed(seed)
    anchor = normalize(torch.randn(1, 8, generator=g))
    sample = normalize(torch.randn(10, 8, generator=g))
    label = torch.randint(0, 3, (10,), generator=g)
    label[0], label[1] = 0, 1
    w = torch.rand(3, 3, generator=g)
    base = p2p_loss(anchor, torch.tensor([0]), sample, label, 0.2, w, mode)
    pos = (label == 0)[:, None]
    closer = torch.where(pos, normalize(sample + t * (anchor - sample)), sample)
    assert p2p_loss(anchor, torch.tensor([0]), closer, label, 0.2, w, mode) < base
    neg_closer = torch.where(~pos, normalize(sample + t * (anchor - sample)), sample)
    assert p2p_loss(anchor, torch.tensor([0]), neg_closer, label, 0.2, w, mode) > base


def _p2p_of(a, s, *, a_lab, s_lab, weight, mode):
    return p2p_loss(a, a_lab, s, s_lab, 0.1, weight, mode)


def test_p2p_gradients_flow_to_both_sides() -> None:
    """The analytic gradients on anchors and samples are the finite-difference ones (a side
    cut off the graph, or a wrong backward, fails), in float64."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(4, 5, generator=g, dtype=torch.float64, requires_grad=True)
    s = torch.randn(6, 5, generator=g, dtype=torch.float64, requires_grad=True)
    a_lab, s_lab = torch.tensor([0, 1, 2, 0]), torch.tensor([0, 1, 2, 0, 1, 2])
    w = torch.rand(3, 3, generator=g, dtype=torch.float64)
    for weight, mode in ((None, "none"), (w, "negatives"), (w, "paper")):
        loss = partial(_p2p_of, a_lab=a_lab, s_lab=s_lab, weight=weight, mode=mode)
        assert torch.autograd.gradcheck(loss, (a, s))
        a.grad = s.grad = None
        loss(a, s).backward()
        assert a.grad.abs().min() > 0 and s.grad.abs().sum(1).min() > 0  # every row moves


def test_class_centers_by_hand() -> None:
    emb = torch.tensor([[3.0, 0.0], [0.0, 2.0], [2.0, 0.0], [5.0, 5.0]])
    centers, present = class_centers(emb, torch.tensor([0, 1, 1, 255]), 3)
    assert present.tolist() == [True, True, False]
    r = 1 / math.sqrt(2)
    assert torch.allclose(centers, torch.tensor([[1.0, 0.0], [r, r], [0.0, 0.0]]))


def test_c2c_by_hand() -> None:
    ca = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    cb = torch.tensor([[0.6, 0.8], [0.8, -0.6], [1.0, 0.0]])
    pa, pb = torch.tensor([True, True, False]), torch.tensor([True, True, True])
    w = torch.zeros(3, 3)
    w[0, 2] = 1.0
    # class 0 anchor [1,0]: pos 0.6, negs 0.8 (class 1), 1.0 (class 2, weight 1 -> x2)
    # class 1 anchor [0,1]: pos -0.6, negs 0.8 (class 0), 0.0 (class 2)
    expected = (_nll(0.6 / LAM, [0.8 / LAM, 2.0 / LAM]) + _nll(-0.6 / LAM, [0.8 / LAM, 0.0])) / 2
    got = c2c_loss(ca, pa, cb, pb, LAM, w, "negatives")
    assert math.isclose(got.item(), expected, rel_tol=1e-6)
    none = c2c_loss(ca, pa, cb, torch.tensor([False, False, True]), LAM)
    assert none.item() == 0.0


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), cap=st.integers(0, 6))
def test_cap_per_class_invariants(seed: int, cap: int) -> None:
    g = torch.Generator().manual_seed(seed)
    label = torch.randint(0, 4, (40,), generator=g)
    label[torch.rand(40, generator=g) < 0.2] = 255
    valid = torch.rand(40, generator=g) < 0.7
    idx = cap_per_class(label, cap, g, valid=valid)
    assert idx.unique().numel() == idx.numel()
    assert valid[idx].all() and (label[idx] != 255).all()
    for c in range(4):
        available = int(((label == c) & valid).sum())
        assert int((label[idx] == c).sum()) == min(cap, available)


def test_select_anchors_misclassified_only() -> None:
    pred = torch.tensor([0, 1, 1, 2, 0, 0])
    label = torch.tensor([0, 0, 0, 255, 1, 1])
    cand = torch.tensor([True, True, True, True, True, False])
    idx = select_anchors(pred, label, cand, 3, max_per_class=1, generator=torch.Generator())
    assert sorted(label[idx].tolist()) == [0, 1]
    assert set(idx.tolist()) <= {1, 2, 4}


def _set(domain: int, image: int, seed: int) -> PixelSet:
    g = torch.Generator().manual_seed(seed)
    label = torch.randint(0, 3, (30,), generator=g)
    return PixelSet(
        emb=torch.randn(30, 4, generator=g, requires_grad=True),
        label=label,
        anchor=torch.rand(30, generator=g) < 0.3,
        center=torch.rand(30, generator=g) < 0.5,
        domain=domain,
        image=image,
    )


def test_unit_pairs() -> None:
    sets = [_set(0, 0, 0), _set(0, 1, 1), _set(1, 2, 2), _set(1, 3, 3)]
    assert unit_pairs(sets, "intra") == [(0, 0), (1, 1), (2, 2), (3, 3)]
    assert unit_pairs(sets, "cross_image") == [(0, 1), (1, 0), (2, 3), (3, 2)]
    assert unit_pairs(sets, "cross_domain") == [(0, 2), (1, 3), (2, 0), (3, 1)]
    assert unit_pairs(sets[:3], "cross_image") == [(0, 1), (1, 0)]
    assert unit_pairs(sets[:2], "cross_domain") == []


def test_mcu_intra_excludes_the_anchor_from_its_samples() -> None:
    emb = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.8, 0.6]])
    label = torch.tensor([0, 0, 1])
    one = PixelSet(emb, label, torch.tensor([True, False, False]), label >= 0, 0, 0)
    out = mcu_loss(
        batch_of([one]),
        MCUSettings(
            intra=True,
            cross_image=False,
            cross_domain=False,
            p2p=True,
            c2c=False,
            temperature=LAM,
            weight_mode="none",
            max_anchors_per_class=5,
            max_samples_per_class=5,
        ),
        weight=None,
        num_classes=2,
    )
    assert list(out) == ["p2p_intra"]
    assert math.isclose(out["p2p_intra"].item(), _nll(0.6 / LAM, [0.8 / LAM]), rel_tol=1e-6)


def _blocky_sets(seed: int, domains: list[int], n: int, classes: int = 4) -> list[PixelSet]:
    """Random sets whose pixels share one embedding per (image, class): which pixels a cap
    keeps does not change the loss, only how many it keeps does, so capped losses have one
    value and the per-pair reference (drawing its own pixels) must reproduce it."""
    g = torch.Generator().manual_seed(seed)
    sets = []
    for i, d in enumerate(domains):
        label = torch.randint(0, classes, (n,), generator=g)
        label[torch.rand(n, generator=g) < 0.15] = 255
        table = torch.randn(classes + 1, 6, generator=g)
        emb = table[label.clamp_max(classes)].requires_grad_(True)
        anchor, center = torch.rand(n, generator=g) < 0.3, torch.rand(n, generator=g) < 0.5
        sets.append(PixelSet(emb, label, anchor, center, d, i))
    return sets


def test_mcu_loss_with_binding_caps_is_the_reference_at_every_level() -> None:
    """Caps of 4 anchors and 6 samples per (image, class) bind (about 10 pixels a class):
    every level and kind equals the per-pair definition with the same caps, and every image
    gets a gradient. Ignoring a cap changes the number of negatives, so the value."""
    settings = MCUSettings(
        intra=True,
        cross_image=True,
        cross_domain=True,
        p2p=True,
        c2c=True,
        temperature=0.1,
        weight_mode="negatives",
        max_anchors_per_class=4,
        max_samples_per_class=6,
    )
    weight = torch.rand(3, 3, generator=torch.Generator().manual_seed(1))
    sets, ref_sets = _blocky_sets(0, [0, 0, 1, 1], 30, 3), _blocky_sets(0, [0, 0, 1, 1], 30, 3)
    gen = torch.Generator().manual_seed(0)
    out = mcu_loss(batch_of(sets), settings, weight=weight, num_classes=3, generator=gen)
    ref = mcu_loss_reference(ref_sets, settings, num_classes=3, weight=weight, generator=gen)
    levels = ("intra", "cross_image", "cross_domain")
    assert set(out) == {f"{k}_{lv}" for k in ("p2p", "c2c") for lv in levels}
    for k in ref:
        assert torch.allclose(out[k], ref[k], rtol=1e-5, atol=1e-6), (k, out[k], ref[k])
    uncapped = replace(settings, max_anchors_per_class=1000, max_samples_per_class=1000)
    loose = mcu_loss_reference(ref_sets, uncapped, num_classes=3, weight=weight)
    assert all(abs(loose[f"p2p_{lv}"].item() - out[f"p2p_{lv}"].item()) > 1e-3 for lv in levels)
    total = sum(out.values())
    total.backward()
    assert all(s.emb.grad is not None and s.emb.grad.abs().sum() > 0 for s in sets)
    partial = mcu_loss(
        batch_of(sets),
        MCUSettings(
            intra=False,
            cross_image=True,
            cross_domain=False,
            p2p=False,
            c2c=True,
            temperature=0.1,
            weight_mode="none",
            max_anchors_per_class=4,
            max_samples_per_class=6,
        ),
        weight=None,
        num_classes=3,
    )
    assert list(partial) == ["c2c_cross_image"]


def test_mcu_loss_without_anchors_is_zero_with_grad() -> None:
    sets = [_set(0, 0, 0), _set(1, 1, 1)]
    for s in sets:
        s.anchor = torch.zeros_like(s.anchor)
    out = mcu_loss(
        batch_of(sets),
        MCUSettings(
            intra=True,
            cross_image=True,
            cross_domain=True,
            p2p=True,
            c2c=False,
            temperature=0.1,
            weight_mode="none",
            max_anchors_per_class=4,
            max_samples_per_class=6,
        ),
        weight=None,
        num_classes=3,
    )
    assert all(v.item() == 0.0 and v.requires_grad for v in out.values())


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), cap=st.integers(-1, 6))
def test_cap_mask_invariants(seed: int, cap: int) -> None:
    g = torch.Generator().manual_seed(seed)
    group = torch.randint(0, 5, (50,), generator=g) * 3 - 4  # negative ids are fine too
    ok = torch.rand(50, generator=g) < 0.6
    chosen = cap_mask(group, ok, cap, g)
    assert not (chosen & ~ok).any()
    for k in group.unique().tolist():
        available = int((ok & (group == k)).sum())
        assert int((chosen & (group == k)).sum()) == min(max(cap, 0), available)


def test_cap_mask_is_uniform() -> None:
    g = torch.Generator().manual_seed(0)
    group = torch.zeros(6, dtype=torch.long)
    hits = torch.zeros(6)
    for _ in range(3000):
        hits += cap_mask(group, torch.ones(6, dtype=torch.bool), 2, g).float()
    assert torch.allclose(hits / 3000, torch.full((6,), 1 / 3), atol=0.04)


def _random_sets(seed: int, domains: list[int], n: int = 40, classes: int = 4) -> list[PixelSet]:
    g = torch.Generator().manual_seed(seed)
    sets = []
    for i, d in enumerate(domains):
        label = torch.randint(0, classes, (n,), generator=g)
        label[torch.rand(n, generator=g) < 0.15] = 255
        emb = torch.randn(n, 6, generator=g).requires_grad_(True)
        sets.append(
            PixelSet(
                emb, label, torch.rand(n, generator=g) < 0.3, torch.rand(n, generator=g) < 0.5, d, i
            )
        )
    return sets


_LEVEL_CHOICES = [
    (True, False, False),
    (False, True, False),
    (False, False, True),
    (True, True, True),
]
_DOMAIN_CHOICES = [[0, 0, 1, 1], [0, 1, 1], [0, 0, 0, 1], [0, 0], [1]]


@pytest.mark.parametrize("weight_mode", ["none", "negatives", "paper"])
@pytest.mark.parametrize("kinds", [(True, False), (False, True), (True, True)])
def test_mcu_loss_matches_the_per_pair_reference(
    weight_mode: str, kinds: tuple[bool, bool]
) -> None:
    """Caps that never bind: the vectorised loss equals the per-pair definition, gradients
    included, for every level, kind and weight mode (T = 0.01 takes the float64 path)."""
    cases = [(lv, d, t) for lv in _LEVEL_CHOICES for d in _DOMAIN_CHOICES for t in (0.1, 0.01)]
    for seed, (levels, domains, temperature) in enumerate(cases):
        settings = MCUSettings(
            intra=levels[0],
            cross_image=levels[1],
            cross_domain=levels[2],
            p2p=kinds[0],
            c2c=kinds[1],
            temperature=temperature,
            weight_mode=weight_mode,
            max_anchors_per_class=1000,
            max_samples_per_class=1000,
        )
        weight = torch.rand(4, 4, generator=torch.Generator().manual_seed(seed))
        ref_sets, sets = _random_sets(seed, domains), _random_sets(seed, domains)
        ref = mcu_loss_reference(ref_sets, settings, num_classes=4, weight=weight)
        gen = torch.Generator().manual_seed(seed)
        got = mcu_loss(batch_of(sets), settings, num_classes=4, weight=weight, generator=gen)
        assert list(got) == list(ref)
        for k in ref:
            assert torch.allclose(got[k], ref[k], rtol=1e-5, atol=1e-5), (k, got[k], ref[k])
            assert got[k].requires_grad
        if ref:
            sum(ref.values()).backward()
            sum(got.values()).backward()
            tol = 1e-5 if temperature >= 0.1 else 1e-4  # float32 gradients of logits ~ 1/T
            for r, v in zip(ref_sets, sets, strict=True):
                assert torch.allclose(v.emb.grad, r.emb.grad, rtol=tol, atol=tol)


def test_mcu_loss_of_an_empty_batch_is_zero_per_enabled_loss() -> None:
    """No image at all (the vectorised path; the per-pair definition agrees)."""
    empty = PixelBatch(
        emb=torch.zeros(0, 6),
        label=torch.zeros(0, dtype=torch.long),
        anchor=torch.zeros(0, dtype=torch.bool),
        center=torch.zeros(0, dtype=torch.bool),
        image=torch.zeros(0, dtype=torch.long),
        domains=[],
    )
    settings = MCUSettings(intra=True, cross_domain=True, p2p=True, c2c=True)
    got = mcu_loss(empty, settings, num_classes=4)
    ref = mcu_loss_reference([], settings, num_classes=4)
    assert (
        list(got) == list(ref) == ["p2p_intra", "c2c_intra", "p2p_cross_domain", "c2c_cross_domain"]
    )
    assert all(v.item() == 0.0 for v in got.values())


def test_mcu_settings_from_config() -> None:
    cfg = TrainConfig(contrast_intra=True, p2p=True, dccm=True, weight_mode="paper")
    settings = MCUSettings.from_config(cfg)
    assert settings.levels() == ["intra"] and settings.p2p and not settings.c2c
    assert settings.weight_mode == "paper"
    assert (settings.temperature, settings.max_anchors_per_class) == (0.1, 16)
    assert MCUSettings.from_config(cfg.replace(dccm=False)).weight_mode == "none"


def test_mcu_loss_with_caps_of_two_anchors_and_five_samples_is_the_reference() -> None:
    """200 pixels an image: caps of 2 and 5 per (image, class) keep a few percent of them;
    the loss is the per-pair definition under the same caps, and no anchor gives zero."""
    sets = _blocky_sets(2, [0, 0, 1, 1], n=200)
    batch = batch_of(sets)
    settings = MCUSettings(
        intra=True,
        cross_image=True,
        cross_domain=True,
        p2p=True,
        temperature=0.1,
        weight_mode="negatives",
        max_samples_per_class=5,
    )
    weight = torch.rand(4, 4, generator=torch.Generator().manual_seed(3))
    two = replace(settings, max_anchors_per_class=2)
    out = mcu_loss(batch, two, num_classes=4, weight=weight, generator=torch.Generator())
    ref = mcu_loss_reference(sets, two, num_classes=4, weight=weight, generator=torch.Generator())
    assert list(out) == list(ref) == ["p2p_intra", "p2p_cross_image", "p2p_cross_domain"]
    for k in ref:
        assert torch.allclose(out[k], ref[k], rtol=1e-5, atol=1e-6), (k, out[k], ref[k])
    zero = replace(settings, max_anchors_per_class=0)
    none = mcu_loss(batch, zero, num_classes=4, weight=weight, generator=torch.Generator())
    assert all(v.item() == 0.0 and v.requires_grad for v in none.values())
