"""InfoNCE (Eq. 10-11 in log-space) of many (anchor unit, sample unit) pairs in one pass.

The kernel of :func:`trainer.learning.contrast.mcu_loss`: one similarity matrix between all anchors
and
all samples, one log-sum-exp of negatives per (anchor, linked unit), the DCCM weighting of
the logits, and float64 only where float32 would underflow.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from trainer.config import WeightMode
from trainer.ops.draws import count_ids


class NceOptions(NamedTuple):
    """InfoNCE's ``temperature`` (lambda) and DCCM ``weight_mode``, and what fixes its shapes:
    ``classes`` (labels in ``[0, classes)``), ``max_positives`` (per pair) and
    ``weight_bound`` (of ``|weight|``); each one None is read from the data (a host sync)."""

    temperature: float
    weight_mode: WeightMode
    classes: int | None = None
    max_positives: int | None = None
    weight_bound: float | None = None


def unit_info_nce(
    anchors: tuple[Tensor, Tensor, Tensor],
    samples: tuple[Tensor, Tensor, Tensor, Tensor],
    counts: Tensor,
    weight: Tensor | None,
    options: NceOptions,
    unit_links: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Sums of ``-log H`` and pair counts, (K,) each, of K losses in one pass.

    Anchors (A, D) L2-normalised, with labels and units (A,); samples (S, D) likewise, and
    a category (S,): 0 a sample only when paired with its own unit (intra), 2 only with
    another unit, 1 both. ``counts`` (K, U, U): how often loss k pairs anchor unit u with
    sample unit v. A term (anchor a, positive s) takes as negatives the other-class samples
    of s's unit, as InfoNCE per unit pair does; so one log-sum-exp per (anchor, linked unit)
    serves every loss. Samples are sorted by (unit, class, category): the positives of
    (a, v) are one contiguous range, found without any (A, S) mask.

    Fixed shapes, no host sync, given ``unit_links`` ((U, L) linked units, -1 padded) and
    the options' ``classes``, ``max_positives`` and ``weight_bound``; each one missing is
    read from the data (a sync)."""
    classes, temperature = options.classes, options.temperature
    a, a_lab, a_unit = anchors
    s, s_lab, s_unit, s_cat = samples
    n_units = counts.shape[-1]
    lo, hi = (0, classes - 1) if classes is not None else _label_range(a_lab, s_lab)
    n_cls = hi - lo + 1
    key = (s_unit * n_cls + (s_lab - lo)) * 3 + s_cat
    order = torch.argsort(key)
    s, s_lab, s_unit, s_cat = s[order], s_lab[order], s_unit[order], s_cat[order]
    n_groups = n_units * n_cls
    per_cat = count_ids(key, 3 * n_groups).view(n_groups, 3)
    first = torch.cumsum(per_cat.sum(1), 0) - per_cat.sum(1)  # (G,) first column of a group
    # logits; |a.s| <= 1, so |logit| <= bound and exp(logit - bound) cannot overflow
    sim = (a / temperature) @ s.T
    neg_logit, bound, host_bound, w_pos = _weighted_negatives(
        sim, (a_lab, s_lab), (lo, n_cls), weight, options
    )
    dtype = _exp_dtype(host_bound, sim.dtype)
    exp = (neg_logit.to(dtype) - bound).exp().masked_fill(a_lab[:, None] == s_lab[None, :], 0.0)
    # sums of exp over a unit's samples that a same-unit / other-unit anchor may use
    unit_hot = F.one_hot(s_unit, n_units).to(dtype)
    block = exp @ torch.cat([unit_hot * (s_cat < 2)[:, None], unit_hot * (s_cat > 0)[:, None]], 1)
    pa, pv, same, start, length = _pairs(
        a_unit, a_lab, lo, n_cls, per_cat, first, counts, unit_links
    )
    neg_sum = block[pa, pv + n_units * (~same).long()]
    very_negative = torch.finfo(sim.dtype).min / 2
    has = neg_sum > 0  # an anchor without negatives gets lse ~ -inf (finite, clean gradients)
    lse = torch.where(
        has, torch.where(has, neg_sum, 1.0).log().to(sim.dtype) + bound, very_negative
    )
    most = options.max_positives
    if most is None:
        most = int(length.max()) if len(pa) else 0
    per_pair = _positive_nll(
        sim, (pa, start, length), lse, w_pos, (a_lab, s_lab), min(most, len(s))
    )
    weights = counts[:, a_unit[pa], pv] * (length > 0)  # (K, pairs); 0: unlinked
    return weights @ per_pair, weights @ length.to(weights.dtype)


def _pairs(
    a_unit: Tensor,
    a_lab: Tensor,
    lo: int,
    n_cls: int,
    per_cat: Tensor,
    first: Tensor,
    counts: Tensor,
    unit_links: Tensor | None,
) -> tuple[Tensor, ...]:
    """(anchor, linked unit) pairs, L per anchor (the unused ones have no positive): anchor,
    unit, whether it is the anchor's own unit, and the positives' column range."""
    if unit_links is None:
        unit_links = _unit_links(counts)
    pa = torch.arange(a_unit.shape[0], device=a_unit.device).repeat_interleave(unit_links.shape[1])
    pv = unit_links[a_unit].reshape(-1)
    linked = pv >= 0
    pv = pv.clamp_min(0)
    same = pv == a_unit[pa]
    gid = pv * n_cls + (a_lab[pa] - lo)
    cnt = per_cat[gid]  # (pairs, 3)
    start = first[gid] + torch.where(same, 0, cnt[:, 0])
    length = torch.where(same, cnt[:, 0] + cnt[:, 1], cnt[:, 1] + cnt[:, 2]) * linked
    return pa, pv, same, start, length


def _unit_links(counts: Tensor) -> Tensor:
    """(U, U): for every anchor unit, the sample units it is linked to, -1 padded."""
    n = counts.shape[-1]
    units = torch.arange(n, device=counts.device)
    ordered = torch.where(counts.sum(0) > 0, units, n).sort(1).values
    return torch.where(ordered < n, ordered, -1)


def _weighted_negatives(
    sim: Tensor,
    labels: tuple[Tensor, Tensor],
    span: tuple[int, int],
    weight: Tensor | None,
    options: NceOptions,
) -> tuple[Tensor, Tensor | float, float, Tensor | None]:
    """Negative logits (A, S) after the DCCM weighting, a bound on their magnitude (a tensor
    from ``weight``, and a host float from the options' ``weight_bound``), and the weight that
    multiplies the positive logits too (``"paper"`` mode) or ``None``. ``labels``: anchors' and
    samples'; ``span``: the lowest label and the number of labels."""
    (a_lab, s_lab), (lo, n_cls) = labels, span
    temperature, mode, weight_bound = options.temperature, options.weight_mode, options.weight_bound
    if weight is None or mode == "none":
        return sim, 1.0 / temperature, 1.0 / temperature, None
    w = weight.to(sim.dtype)
    w_max = w.abs().amax() if w.numel() else w.new_zeros(())
    if weight_bound is None:
        weight_bound = float(w_max)
    onehot = F.one_hot(s_lab - lo, n_cls).to(sim.dtype).T  # (n_cls, S)
    rows = _class_rows(w, a_lab, lo, n_cls)  # (A, n_cls) = w[a_lab, lo + j]
    if mode == "negatives":
        bounds = (1.0 + w_max) / temperature, (1.0 + weight_bound) / temperature
        return sim * ((rows + 1.0) @ onehot), *bounds, None
    if mode == "paper":
        return sim * (rows @ onehot), w_max / temperature, weight_bound / temperature, w
    raise ValueError(f"unknown weight_mode {mode!r}")


def _exp_dtype(bound: float, dtype: torch.dtype) -> torch.dtype:
    """``dtype``, or float64 when ``exp(logit - bound)`` could underflow in it."""
    if 2 * bound >= -0.9 * math.log(torch.finfo(dtype).tiny):
        dtype = torch.float64
        if 2 * bound >= -0.9 * math.log(torch.finfo(dtype).tiny):
            raise ValueError(f"logits up to {bound:.3g} in magnitude: temperature too small")
    return dtype


def _positive_nll(
    sim: Tensor,
    pairs: tuple[Tensor, Tensor, Tensor],
    lse: Tensor,
    w_pos: Tensor | None,
    labels: tuple[Tensor, Tensor],
    max_len: int,
) -> Tensor:
    """Sum of ``-log H`` per (anchor ``pa``, linked unit) pair over the positives in its column
    range ``[start, start + length)`` (``pairs``), ``length <= max_len``, with the pair's
    negatives' log-sum-exp ``lse``: (pairs, max_len) positions, the unused ones masked.
    ``labels``: anchors' and samples'."""
    (pa, start, length), (a_lab, s_lab) = pairs, labels
    j = torch.arange(max_len, device=sim.device)
    used = j < length[:, None]
    col = (start[:, None] + j).clamp(0, max(sim.shape[1] - 1, 0))
    ai = pa[:, None].expand_as(col)
    pl = sim[ai, col]
    if w_pos is not None:
        pl = pl * w_pos[a_lab[ai], s_lab[col]]
    # -log H = log(exp(l+) + sum exp(l-)) - l+   (Eq. 10 in log-space)
    nll = torch.logaddexp(pl, lse[:, None]) - pl
    return torch.where(used, nll, 0.0).sum(1)


def _label_range(a_lab: Tensor, s_lab: Tensor) -> tuple[int, int]:
    """Smallest and largest label of anchors and samples (0, 0 when there is none)."""
    both = torch.cat([a_lab, s_lab])
    if both.numel() == 0:
        return 0, 0
    lo, hi = torch.aminmax(both)
    return int(lo), int(hi)


def _class_rows(w: Tensor, a_lab: Tensor, lo: int, n_cls: int) -> Tensor:
    """(A, n_cls): ``w[a_lab, lo + j]``, zero where ``lo + j`` is no column of ``w``."""
    cols = torch.arange(lo, lo + n_cls, device=w.device)
    inside = (cols >= 0) & (cols < w.shape[1])
    return w[a_lab][:, cols.clamp(0, max(w.shape[1] - 1, 0))] * inside
