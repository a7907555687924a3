"""The per-pair definition of the MCU losses (Eq. 9-11), the reference for
trainer.learning.contrast.

One InfoNCE per (anchor set, sample set) pair, anchors and samples drawn per pair, as the
equations are printed. :func:`trainer.learning.contrast.mcu_loss` computes the same losses in one
pass; the tests check the two against each other and check these against hand computations.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from trainer.constants import IGNORE_INDEX
from trainer.learning.contrast import (
    Level,
    MCUSettings,
    PixelBatch,
    _capped,
    _ranked,
    level_pairs,
    normalize,
)
from trainer.learning.infonce import WeightMode


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


def batch_of(sets: list[PixelSet]) -> PixelBatch:
    """Concatenate per-image sets; image ``i`` is ``sets[i]`` (not ``sets[i].image``)."""
    device = sets[0].emb.device
    image = [
        torch.full((len(s.label),), i, dtype=torch.long, device=device) for i, s in enumerate(sets)
    ]
    return PixelBatch(
        emb=torch.cat([s.emb for s in sets]),
        label=torch.cat([s.label for s in sets]),
        anchor=torch.cat([s.anchor for s in sets]),
        center=torch.cat([s.center for s in sets]),
        image=torch.cat(image),
        domains=[s.domain for s in sets],
    )


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
    settings: MCUSettings,
    *,
    num_classes: int,
    weight: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> dict[str, Tensor]:
    """The definition of :func:`trainer.learning.contrast.mcu_loss`, one :func:`info_nce_terms` call
    per unit pair.

    Slow (python per pair, anchors and samples drawn again for every pair); the reference
    that the vectorised :func:`mcu_loss` is tested against.
    """
    nce = (settings.temperature, weight, settings.weight_mode)
    caps = (settings.max_anchors_per_class, settings.max_samples_per_class)
    zero = sum((s.emb.sum() * 0.0 for s in sets), torch.zeros(()))
    centers = [class_centers(s.emb[s.center], s.label[s.center], num_classes) for s in sets]
    out: dict[str, Tensor] = {}
    for level in settings.levels():
        pairs = unit_pairs(sets, level)
        if settings.p2p:
            terms = [_p2p_pair(sets[i], sets[j], i == j, caps, generator, nce) for i, j in pairs]
            out[f"p2p_{level}"] = _mean(terms, zero)
        if settings.c2c:
            out[f"c2c_{level}"] = _mean(
                [info_nce_terms(*_center_inputs(*centers[i], *centers[j]), *nce) for i, j in pairs],
                zero,
            )
    return out


def _mean(terms: list[tuple[Tensor, int]], zero: Tensor) -> Tensor:
    count = sum(n for _, n in terms)
    total = sum((t for t, _ in terms), zero)
    return total / max(count, 1)
