"""Multi-level contrastive units (section III-C, Eq. 9-11), weighted by the DCCM.

Shapes: ``P`` pixels, ``D`` embedding size, ``A`` anchors, ``S`` samples, ``C`` classes.
Labels equal to ``ignore_index=255`` never take part in a pair.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from trainer.constants import IGNORE_INDEX
from trainer.draws import device_generator

WeightMode = Literal["negatives", "paper", "none"]


def normalize(emb: Tensor, dim: int = -1) -> Tensor:
    """L2-normalise ``emb`` along ``dim`` (zero vectors stay zero)."""
    return F.normalize(emb, p=2.0, dim=dim, eps=1e-12)


def _randperm(n: int, generator: torch.Generator | None, device: torch.device) -> Tensor:
    """A random permutation made on ``device`` (no host-side draw and copy on a GPU)."""
    return torch.randperm(n, generator=device_generator(generator, device), device=device)


def _ranked(group: Tensor, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
    """Group items in a uniformly random order within each group.

    ``group`` is (P,) long. Returns ``order`` (P,): a stable sort by group of a random
    permutation, and ``first`` (P,) long: in that order, the position of each item's
    group's first item.
    """
    perm = _randperm(group.numel(), generator, group.device)
    order = perm[torch.argsort(group[perm], stable=True)]
    g = group[order]
    start = torch.ones_like(g, dtype=torch.bool)
    start[1:] = g[1:] != g[:-1]
    pos = torch.arange(g.numel(), device=g.device)
    return order, torch.cummax(torch.where(start, pos, 0), 0).values


def _capped(ranked: tuple[Tensor, Tensor], ok: Tensor, cap: int) -> Tensor:
    """(P,) bool: the first ``cap`` items with ``ok`` of every group of :func:`_ranked`."""
    order, first = ranked
    ok_sorted = ok[order]
    count = torch.cumsum(ok_sorted, 0)
    rank = count - (count - ok_sorted.long())[first]  # 1-based rank among the group's ok items
    chosen = torch.empty_like(ok)
    chosen[order] = ok_sorted & (rank <= cap)
    return chosen


def cap_mask(
    group: Tensor,
    ok: Tensor,
    max_per_group: int,
    generator: torch.Generator | None = None,
) -> Tensor:
    """(P,) bool: ``min(max_per_group, available)`` uniformly chosen ``ok`` items per group.

    ``group`` is (P,) long (e.g. ``image * 256 + class``), ``ok`` (P,) bool. One random
    permutation and one stable sort by group, no loop over groups.
    """
    return _capped(_ranked(group, generator), ok, max_per_group)


def cap_per_class(
    label: Tensor,
    max_per_class: int,
    generator: torch.Generator | None = None,
    valid: Tensor | None = None,
) -> Tensor:
    """Indices of at most ``max_per_class`` uniformly chosen pixels of each class.

    ``label`` is (P,) long (``255`` never chosen); ``valid`` an optional (P,) bool of the
    pixels that may be chosen; ``max_per_class <= 0`` chooses none. Returns (K,) long
    indices into ``label``, grouped by class.
    """
    ok = label != IGNORE_INDEX
    if valid is not None:
        ok = ok & valid
    if max_per_class <= 0 or label.numel() == 0:
        return ok.nonzero().squeeze(1)[:0]
    ranked = _ranked(label, generator)
    return ranked[0][_capped(ranked, ok, max_per_class)[ranked[0]]]


def select_anchors(
    pred: Tensor,
    label: Tensor,
    candidate: Tensor,
    num_classes: int,
    max_per_class: int,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Hard anchors (III-C1): misclassified candidates, capped per true class.

    ``pred`` and ``label`` are (P,) long (labels 255 or outside ``[0, C)`` ignored);
    ``candidate`` is (P,) bool: all source pixels, or the labeled target pixels (the
    target's anchors come from its queried pixels, footnote 2). Returns (A,) long indices.
    """
    wrong = candidate & (pred != label) & (label >= 0) & (label < num_classes)
    return cap_per_class(label, max_per_class, generator, valid=wrong)


def _pair_logits(
    sim: Tensor, a_lab: Tensor, s_lab: Tensor, weight: Tensor | None, weight_mode: WeightMode
) -> tuple[Tensor, Tensor]:
    """Logits for positives and negatives, (A, S) each, after the DCCM weighting."""
    if weight is None or weight_mode == "none":
        return sim, sim
    w = weight.to(sim.dtype)[a_lab][:, s_lab]
    if weight_mode == "negatives":
        return sim, sim * (1.0 + w)
    if weight_mode == "paper":
        return sim * w, sim * w
    raise ValueError(f"unknown weight_mode {weight_mode!r}")


def info_nce_terms(
    anchor: Tensor,
    anchor_label: Tensor,
    sample: Tensor,
    sample_label: Tensor,
    temperature: float,
    weight: Tensor | None = None,
    weight_mode: WeightMode = "negatives",
) -> tuple[Tensor, int]:
    """Sum of ``-log H`` over all (anchor, positive) pairs and the number of pairs.

    See :func:`p2p_loss`; the sum lets callers average over several unit pairs.
    """
    a_ok, s_ok = anchor_label != IGNORE_INDEX, sample_label != IGNORE_INDEX
    a, a_lab = normalize(anchor[a_ok]), anchor_label[a_ok]
    s, s_lab = normalize(sample[s_ok]), sample_label[s_ok]
    pos = a_lab[:, None] == s_lab[None, :]
    n_pairs = int(pos.sum())
    if n_pairs == 0:
        return anchor.sum() * 0.0 + sample.sum() * 0.0, 0
    sim = a @ s.T / temperature
    pos_logit, neg_logit = _pair_logits(sim, a_lab, s_lab, weight, weight_mode)
    very_negative = torch.finfo(sim.dtype).min / 2
    # an anchor without negatives gets neg_lse ~ -inf (finite, so gradients stay clean)
    neg_lse = torch.logsumexp(neg_logit.masked_fill(pos, very_negative), dim=1)
    # -log H = log(exp(l+) + sum exp(l-)) - l+   (Eq. 10 in log-space)
    nll = torch.logaddexp(pos_logit, neg_lse[:, None].expand_as(pos_logit)) - pos_logit
    return nll[pos].sum(), n_pairs


def p2p_loss(
    anchor: Tensor,
    anchor_label: Tensor,
    sample: Tensor,
    sample_label: Tensor,
    temperature: float,
    weight: Tensor | None = None,
    weight_mode: WeightMode = "negatives",
) -> Tensor:
    """Pixel-to-pixel contrastive loss (Eq. 9-10).

    For every anchor ``a`` of class ``u`` and positive sample ``s+`` (same label)::

        H = exp(l(a, s+)) / (exp(l(a, s+)) + sum_{s- of class v != u} exp(l(a, s-)))

    with ``l(a, s) = a . s / temperature`` on L2-normalised embeddings, and the loss is
    the mean of ``-log H`` over all pairs (an anchor without negatives gives 0).

    Args:
        anchor: (A, D) embeddings; anchor_label: (A,) long, ``255`` ignored.
        sample: (S, D) embeddings; sample_label: (S,) long, ``255`` ignored.
        temperature: ``lambda``.
        weight: (C, C) DCCM ``w[u, v]`` or ``None``.
        weight_mode: ``"negatives"`` (default): negative logits times ``1 + w[u, v]``,
            positives unweighted (an error-rate DCCM has a zero diagonal, so the
            literal form would zero every positive logit); ``"paper"``: every logit
            times ``w[u, v]`` as printed (positives use ``w[u, u]``); ``"none"``:
            plain InfoNCE.

    Returns:
        Scalar loss; ``0`` (still attached to the graph) when there is no pair.
    """
    total, n = info_nce_terms(
        anchor, anchor_label, sample, sample_label, temperature, weight, weight_mode
    )
    return total / max(n, 1)


def class_centers(emb: Tensor, label: Tensor, num_classes: int) -> tuple[Tensor, Tensor]:
    """Class centres (III-C1): (C, D) L2-normalised mean of the L2-normalised (P, D)
    embeddings (usually of G_l pixels) per class, zero for absent classes, and (C,) bool
    ``present``. Labels ``255`` (and any outside ``[0, C)``) are ignored.
    """
    ok = (label >= 0) & (label < num_classes)
    e, lab = normalize(emb[ok]), label[ok]
    sums = emb.new_zeros(num_classes, emb.shape[1]).index_add(0, lab, e)
    return normalize(sums), torch.bincount(lab, minlength=num_classes) > 0


def _center_inputs(
    centers_a: Tensor, present_a: Tensor, centers_b: Tensor, present_b: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Present centres of ``a`` and ``b`` with their class indices as labels."""
    classes = torch.arange(centers_a.shape[0], device=centers_a.device)
    return centers_a[present_a], classes[present_a], centers_b[present_b], classes[present_b]


def c2c_loss(
    centers_a: Tensor,
    present_a: Tensor,
    centers_b: Tensor,
    present_b: Tensor,
    temperature: float,
    weight: Tensor | None = None,
    weight_mode: WeightMode = "negatives",
) -> Tensor:
    """Centre-to-centre contrastive loss (Eq. 11), same form as :func:`p2p_loss`.

    Anchors: the present centres of ``a`` (class ``u``); positive: the centre of ``u``
    in ``b``; negatives: the other present centres of ``b``. Centres and presence are
    (C, D) and (C,) from :func:`class_centers`. Returns a scalar, 0 (attached) when no
    class is present in both.
    """
    inputs = _center_inputs(centers_a, present_a, centers_b, present_b)
    total, n = info_nce_terms(*inputs, temperature, weight, weight_mode)
    return total / max(n, 1)


@dataclass
class PixelSet:
    """The pixels of one image that take part in the contrastive units.

    emb: (P, D) projected embeddings. label: (P,) long true or pseudo labels (255:
    none). anchor: (P,) bool hard anchors. center: (P,) bool pixels of G_l used for
    class centres. domain: 0 source, 1 target. image: index of the image in the batch.
    """

    emb: Tensor
    label: Tensor
    anchor: Tensor
    center: Tensor
    domain: int
    image: int


@dataclass
class PixelBatch:
    """The pixels of every image of a batch that take part in the MCUs, concatenated.

    emb, label, anchor, center: as in :class:`PixelSet`, (P, D) and (P,) over all images.
    image: (P,) long, the position of each pixel's image in ``domains``. domains: the domain
    (0 source, 1 target) of every image, in batch order (the order :func:`unit_pairs` uses).
    """

    emb: Tensor
    label: Tensor
    anchor: Tensor
    center: Tensor
    image: Tensor
    domains: list[int]

    @staticmethod
    def from_sets(sets: list[PixelSet]) -> PixelBatch:
        """Concatenate per-image sets; image ``i`` is ``sets[i]`` (not ``sets[i].image``)."""
        device = sets[0].emb.device
        image = [
            torch.full((len(s.label),), i, dtype=torch.long, device=device)
            for i, s in enumerate(sets)
        ]
        return PixelBatch(
            emb=torch.cat([s.emb for s in sets]),
            label=torch.cat([s.label for s in sets]),
            anchor=torch.cat([s.anchor for s in sets]),
            center=torch.cat([s.center for s in sets]),
            image=torch.cat(image),
            domains=[s.domain for s in sets],
        )


def image_class_groups(image: Tensor, label: Tensor) -> Tensor:
    """(P,) long id of each pixel's (image, label) pair, for :func:`cap_mask` (no sync)."""
    if label.numel() == 0:
        return image.clone()
    lo, hi = torch.aminmax(label)
    return image * (hi - lo + 1) + (label - lo)


Level = Literal["intra", "cross_image", "cross_domain"]
LEVELS: tuple[Level, ...] = ("intra", "cross_image", "cross_domain")


def level_pairs(domains: list[int], level: Level) -> list[tuple[int, int]]:
    """:func:`unit_pairs` from the images' domains alone."""
    if level == "intra":
        return [(i, i) for i in range(len(domains))]
    by_domain: dict[int, list[int]] = {}
    for i, d in enumerate(domains):
        by_domain.setdefault(d, []).append(i)
    pairs: list[tuple[int, int]] = []
    if level == "cross_image":
        for idx in by_domain.values():
            if len(idx) > 1:
                pairs += [(a, idx[(j + 1) % len(idx)]) for j, a in enumerate(idx)]
        return pairs
    src, tgt = by_domain.get(0, []), by_domain.get(1, [])
    if src and tgt:
        pairs += [(a, tgt[j % len(tgt)]) for j, a in enumerate(src)]
        pairs += [(a, src[j % len(src)]) for j, a in enumerate(tgt)]
    return pairs


def unit_pairs(sets: list[PixelSet], level: Level) -> list[tuple[int, int]]:
    """Deterministic (anchor set, sample set) pairs of one MCU level (III-C2).

    intra: every set with itself. cross_image: within each domain, in list order, each
    set with the next one (cyclically); none for a domain with a single set.
    cross_domain: the j-th set of one domain with the (j mod n)-th set of the other,
    in both directions. The batch is already a random draw, so no generator is needed.
    """
    return level_pairs([s.domain for s in sets], level)


def _p2p_pair(
    a: PixelSet,
    b: PixelSet,
    same: bool,
    caps: tuple[int, int],
    generator: torch.Generator | None,
    nce: tuple[float, Tensor | None, WeightMode],
) -> tuple[Tensor, int]:
    anchors = cap_per_class(a.label, caps[0], generator, valid=a.anchor)
    sample_ok = b.label != IGNORE_INDEX
    if same:  # an anchor is not its own positive
        sample_ok[anchors] = False
    samples = cap_per_class(b.label, caps[1], generator, valid=sample_ok)
    return info_nce_terms(a.emb[anchors], a.label[anchors], b.emb[samples], b.label[samples], *nce)


def mcu_loss_reference(
    sets: list[PixelSet],
    *,
    intra: bool,
    cross_image: bool,
    cross_domain: bool,
    p2p: bool,
    c2c: bool,
    temperature: float,
    weight: Tensor | None,
    weight_mode: WeightMode,
    num_classes: int,
    max_anchors_per_class: int,
    max_samples_per_class: int,
    generator: torch.Generator | None = None,
) -> dict[str, Tensor]:
    """The definition of :func:`mcu_loss`, one :func:`info_nce_terms` call per unit pair.

    Slow (python per pair, anchors and samples drawn again for every pair); kept as the
    reference that the vectorised :func:`mcu_loss` is tested against.
    """
    nce = (temperature, weight, weight_mode)
    caps = (max_anchors_per_class, max_samples_per_class)
    zero = sum((s.emb.sum() * 0.0 for s in sets), torch.zeros(()))
    on = {"intra": intra, "cross_image": cross_image, "cross_domain": cross_domain}
    centers = [class_centers(s.emb[s.center], s.label[s.center], num_classes) for s in sets]
    out: dict[str, Tensor] = {}
    for level in (name for name, enabled in on.items() if enabled):
        pairs = unit_pairs(sets, level)
        if p2p:
            terms = [_p2p_pair(sets[i], sets[j], i == j, caps, generator, nce) for i, j in pairs]
            out[f"p2p_{level}"] = _mean(terms, zero)
        if c2c:
            out[f"c2c_{level}"] = _mean(
                [info_nce_terms(*_center_inputs(*centers[i], *centers[j]), *nce) for i, j in pairs],
                zero,
            )
    return out


def _mean(terms: list[tuple[Tensor, int]], zero: Tensor) -> Tensor:
    count = sum(n for _, n in terms)
    total = sum((t for t, _ in terms), zero)
    return total / max(count, 1)


def mcu_loss(
    sets: list[PixelSet] | PixelBatch,
    *,
    intra: bool,
    cross_image: bool,
    cross_domain: bool,
    p2p: bool,
    c2c: bool,
    temperature: float,
    weight: Tensor | None,
    weight_mode: WeightMode,
    num_classes: int,
    max_anchors_per_class: int,
    max_samples_per_class: int,
    generator: torch.Generator | None = None,
) -> dict[str, Tensor]:
    """Contrastive losses of the enabled MCU levels (III-C2, Eq. 9-11).

    Anchors: up to ``max_anchors_per_class`` of each image's ``anchor`` pixels per class.
    Samples: up to ``max_samples_per_class`` labelled pixels per class of the paired image
    (:func:`unit_pairs`); in the intra level the chosen anchors are left out of the
    samples. c2c uses per-image centres of the ``center`` pixels (:func:`class_centers`).
    Each loss is the mean of ``-log H`` over all pairs of its level.

    Same value as :func:`mcu_loss_reference` whenever the caps do not bind. Vectorised:
    anchors and samples are drawn once per image for all levels (the intra samples and
    the cross-image samples of an image are each a uniform draw, as in the reference),
    embeddings are normalised once, and one similarity matrix between all anchors (pixels
    and centres) and all samples serves every level and both kinds: each (anchor, positive)
    term takes its negatives from the positive's own image (unit), as in the per-pair form.

    Returns ``{"p2p_intra", "c2c_intra", "p2p_cross_image", ...}``, enabled entries only:
    scalars, 0 (attached to the embeddings) when a level has no pair.
    """
    batch = sets if isinstance(sets, PixelBatch) else None
    if batch is None:
        if not sets:
            return mcu_loss_reference(
                [],
                intra=intra,
                cross_image=cross_image,
                cross_domain=cross_domain,
                p2p=p2p,
                c2c=c2c,
                temperature=temperature,
                weight=weight,
                weight_mode=weight_mode,
                num_classes=num_classes,
                max_anchors_per_class=max_anchors_per_class,
                max_samples_per_class=max_samples_per_class,
            )
        batch = PixelBatch.from_sets(sets)
    n_img = len(batch.domains)
    on = {"intra": intra, "cross_image": cross_image, "cross_domain": cross_domain}
    keys: list[str] = []
    links: list[tuple[int, int, int]] = []  # (loss, anchor unit, sample unit)
    for level in (name for name in LEVELS if on[name]):
        pairs = level_pairs(batch.domains, level)
        # units: image i's pixels are unit i, its class centres unit n_img + i
        for kind, off in (("p2p", 0), ("c2c", n_img)):
            if p2p if kind == "p2p" else c2c:
                links += [(len(keys), off + i, off + j) for i, j in pairs]
                keys.append(f"{kind}_{level}")
    zero = batch.emb.sum() * 0.0
    if not links:
        return {k: zero for k in keys}
    emb = normalize(batch.emb)
    label, image = batch.label, batch.image
    anchors: list[tuple[Tensor, Tensor, Tensor]] = []  # (emb, label, unit)
    samples: list[tuple[Tensor, Tensor, Tensor, Tensor]] = []  # + category (see _unit_nce)
    if p2p:
        labeled = label != IGNORE_INDEX
        group = image_class_groups(image, label)
        chosen = cap_mask(group, batch.anchor & labeled, max_anchors_per_class, generator)
        ranked = _ranked(group, generator)
        intra_ok = _capped(ranked, labeled & ~chosen, max_samples_per_class)
        cross_ok = _capped(ranked, labeled, max_samples_per_class)
        a_idx = chosen.nonzero().squeeze(1)
        s_idx = (intra_ok | cross_ok).nonzero().squeeze(1)
        anchors.append((emb[a_idx], label[a_idx], image[a_idx]))
        cat = 1 - intra_ok[s_idx].long() + cross_ok[s_idx].long()
        samples.append((emb[s_idx], label[s_idx], image[s_idx], cat))
    if c2c:
        ok = batch.center & (label >= 0) & (label < num_classes)
        cell = (image * num_classes + label)[ok]
        sums = emb.new_zeros(n_img * num_classes, emb.shape[1]).index_add(0, cell, emb[ok])
        rows = (torch.bincount(cell, minlength=n_img * num_classes) > 0).nonzero().squeeze(1)
        cen, c_lab, c_unit = normalize(sums[rows]), rows % num_classes, n_img + rows // num_classes
        anchors.append((cen, c_lab, c_unit))
        samples.append((cen, c_lab, c_unit, torch.ones_like(rows)))
    a, a_lab, a_unit = (torch.cat(t) if len(t) > 1 else t[0] for t in zip(*anchors, strict=True))
    s, s_lab, s_unit, s_cat = (
        torch.cat(t) if len(t) > 1 else t[0] for t in zip(*samples, strict=True)
    )
    n_units = 2 * n_img
    link = torch.tensor(links, device=emb.device).T
    counts = emb.new_zeros(len(keys), n_units, n_units).index_put_(
        (link[0], link[1], link[2]), emb.new_ones(link.shape[1]), accumulate=True
    )
    totals, n_pairs = _unit_nce(
        a, a_lab, a_unit, s, s_lab, s_unit, s_cat, counts, temperature, weight, weight_mode
    )
    losses = totals / n_pairs.clamp_min(1.0)
    return {k: losses[i] for i, k in enumerate(keys)}


def _unit_nce(
    a: Tensor,
    a_lab: Tensor,
    a_unit: Tensor,
    s: Tensor,
    s_lab: Tensor,
    s_unit: Tensor,
    s_cat: Tensor,
    counts: Tensor,
    temperature: float,
    weight: Tensor | None,
    weight_mode: WeightMode,
) -> tuple[Tensor, Tensor]:
    """Sums of ``-log H`` and pair counts, (K,) each, of K losses in one pass.

    Anchors (A, D) L2-normalised, with labels and units (A,); samples (S, D) likewise, and
    a category (S,): 0 a sample only when paired with its own unit (intra), 2 only with
    another unit, 1 both. ``counts`` (K, U, U): how often loss k pairs anchor unit u with
    sample unit v. A term (anchor a, positive s) takes as negatives the other-class samples
    of s's unit, as in :func:`info_nce_terms` per unit pair; so one log-sum-exp per (anchor,
    linked unit) serves every loss. Samples are sorted by (unit, class, category): the
    positives of (a, v) are one contiguous range, found without any (A, S) mask.
    """
    n_units, dev = counts.shape[-1], a.device
    lo, hi = _label_range(a_lab, s_lab)
    n_cls = hi - lo + 1
    s_gid = s_unit * n_cls + (s_lab - lo)
    key = s_gid * 3 + s_cat
    order = torch.argsort(key)
    s, s_lab, s_unit, s_cat = s[order], s_lab[order], s_unit[order], s_cat[order]
    n_groups = n_units * n_cls
    per_cat = torch.bincount(key, minlength=3 * n_groups).view(n_groups, 3)
    first = torch.cumsum(per_cat.sum(1), 0) - per_cat.sum(1)  # (G,) first column of a group
    # logits; |a.s| <= 1, so |logit| <= bound and exp(logit - bound) cannot overflow
    sim = (a / temperature) @ s.T
    w_pos = None
    if weight is None or weight_mode == "none":
        neg_logit, bound = sim, 1.0 / temperature
    else:
        w = weight.to(sim.dtype)
        w_max = float(w.abs().max()) if w.numel() else 0.0
        onehot = F.one_hot(s_lab - lo, n_cls).to(sim.dtype).T  # (n_cls, S)
        rows = _class_rows(w, a_lab, lo, n_cls)  # (A, n_cls) = w[a_lab, lo + j]
        if weight_mode == "negatives":
            neg_logit, bound = sim * ((rows + 1.0) @ onehot), (1.0 + w_max) / temperature
        elif weight_mode == "paper":
            neg_logit, bound, w_pos = sim * (rows @ onehot), w_max / temperature, w
        else:
            raise ValueError(f"unknown weight_mode {weight_mode!r}")
    dtype = sim.dtype
    if 2 * bound >= -0.9 * math.log(torch.finfo(dtype).tiny):  # exp would underflow
        dtype = torch.float64
        if 2 * bound >= -0.9 * math.log(torch.finfo(dtype).tiny):
            raise ValueError(f"logits up to {bound:.3g} in magnitude: temperature too small")
    exp = (neg_logit.to(dtype) - bound).exp().masked_fill(a_lab[:, None] == s_lab[None, :], 0.0)
    # sums of exp over a unit's samples that a same-unit / other-unit anchor may use
    unit_hot = F.one_hot(s_unit, n_units).to(dtype)
    block = exp @ torch.cat([unit_hot * (s_cat < 2)[:, None], unit_hot * (s_cat > 0)[:, None]], 1)
    # (anchor, linked unit) pairs and their positives' column ranges
    pa, pv = (counts.sum(0) > 0)[a_unit].nonzero(as_tuple=True)
    same = pv == a_unit[pa]
    gid = pv * n_cls + (a_lab[pa] - lo)
    cnt = per_cat[gid]  # (pairs, 3)
    start = first[gid] + torch.where(same, 0, cnt[:, 0])
    length = torch.where(same, cnt[:, 0] + cnt[:, 1], cnt[:, 1] + cnt[:, 2])
    neg_sum = block[pa, pv + n_units * (~same).long()]
    very_negative = torch.finfo(sim.dtype).min / 2
    has = neg_sum > 0  # an anchor without negatives gets lse ~ -inf (finite, clean gradients)
    lse = torch.where(
        has, torch.where(has, neg_sum, 1.0).log().to(sim.dtype) + bound, very_negative
    )
    # every positive: its pair and column
    pair = torch.repeat_interleave(torch.arange(pa.numel(), device=dev), length)
    offset = torch.cumsum(length, 0) - length
    col = torch.arange(pair.numel(), device=dev) - offset[pair] + start[pair]
    ai = pa[pair]
    pl = sim.flatten()[ai * sim.shape[1] + col]
    if w_pos is not None:
        pl = pl * w_pos[a_lab[ai], s_lab[col]]
    # -log H = log(exp(l+) + sum exp(l-)) - l+   (Eq. 10 in log-space)
    nll = torch.logaddexp(pl, lse[pair]) - pl
    per_pair = nll.new_zeros(pa.numel()).index_add(0, pair, nll)
    weights = counts[:, a_unit[pa], pv]  # (K, pairs)
    return weights @ per_pair, weights @ length.to(weights.dtype)


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
