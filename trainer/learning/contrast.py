"""Multi-level contrastive units (section III-C, Eq. 9-11), weighted by the DCCM.

Shapes: ``P`` pixels, ``D`` embedding size, ``A`` anchors, ``S`` samples, ``C`` classes.
Labels equal to ``IGNORE_INDEX`` (255) never take part in a pair. :func:`mcu_loss` computes
every enabled unit in one pass; its per-pair definition (one InfoNCE per unit pair, Eq. 10-11
as printed) lives next to its tests, ``tests/trainer/learning/contrast_reference.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from trainer.config import TrainConfig, WeightMode
from trainer.learning.centres import center_units
from trainer.learning.infonce import NceOptions, unit_info_nce
from trainer.nets.forward import maybe_compiled
from trainer.ops.draws import device_generator, host_to_device


@dataclass(frozen=True)
class MCUSettings:
    """Which MCU losses run and how (III-C2).

    Levels ``intra`` / ``cross_image`` / ``cross_domain`` (:func:`level_pairs`), kinds ``p2p``
    (Eq. 9-10) and ``c2c`` (Eq. 11), InfoNCE's ``temperature`` (lambda), how the DCCM weights
    the logits (``weight_mode``: ``"negatives"`` multiplies negative logits by ``1 + w[u, v]``,
    ``"paper"`` every logit by ``w[u, v]`` as printed, ``"none"`` plain InfoNCE), the caps
    per image and class, and ``c2c_self_positive`` (False: a centre samples other units only).
    """

    intra: bool = False
    cross_image: bool = False
    cross_domain: bool = False
    p2p: bool = False
    c2c: bool = False
    temperature: float = 0.1
    weight_mode: WeightMode = WeightMode.NEGATIVES
    max_anchors_per_class: int = 16
    max_samples_per_class: int = 32
    c2c_self_positive: bool = True  # intra c2c: a centre is its own positive (False: no pair)
    center_scope: str = "image"  # class centres per (image, class); "domain": per (domain, class)
    compile: bool = False  # torch.compile the InfoNCE kernel (trainer.nets.forward.maybe_compiled)
    fixed_shapes: bool = True  # padded slots, no host sync (False: exact sizes, a few syncs)

    @staticmethod
    def from_config(cfg: TrainConfig, fixed_shapes: bool = True) -> MCUSettings:
        """The settings of a training config; without the DCCM the logits are not weighted."""
        return MCUSettings(
            intra=cfg.contrast_intra,
            cross_image=cfg.contrast_cross_image,
            cross_domain=cfg.contrast_cross_domain,
            p2p=cfg.p2p,
            c2c=cfg.c2c,
            temperature=cfg.temperature,
            weight_mode=WeightMode(cfg.weight_mode) if cfg.dccm else WeightMode.NONE,
            max_anchors_per_class=cfg.max_anchors_per_class,
            max_samples_per_class=cfg.max_samples_per_class,
            c2c_self_positive=cfg.c2c_self_positive,
            center_scope=cfg.center_scope,
            compile=cfg.compile_step,
            fixed_shapes=fixed_shapes,
        )

    def levels(self) -> list[Level]:
        on = {"intra": self.intra, "cross_image": self.cross_image}
        on["cross_domain"] = self.cross_domain
        return [name for name in LEVELS if on[name]]


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


@dataclass
class PixelBatch:
    """The pixels of every image of a batch that take part in the MCUs, concatenated.

    emb (P, D) projected embeddings; label (P,) long true or pseudo labels (255: none);
    anchor (P,) bool hard anchors; center (P,) bool pixels of G_l used for class centres.
    image: (P,) long, the position of each pixel's image in ``domains``. domains: the domain
    (0 source, 1 target) of every image, in batch order (the order :func:`level_pairs` uses).
    """

    emb: Tensor
    label: Tensor
    anchor: Tensor
    center: Tensor
    image: Tensor
    domains: list[int]
    inexact: Tensor | None = None  # padded sets: 0-dim bool, a capped draw came out short
    centres: tuple[Tensor, Tensor] | None = None  # every G_l pixel's centre sums and counts


Level = Literal["intra", "cross_image", "cross_domain"]
LEVELS: tuple[Level, ...] = ("intra", "cross_image", "cross_domain")


def level_pairs(domains: list[int], level: Level) -> list[tuple[int, int]]:
    """Deterministic (anchor image, sample image) pairs of one MCU level (III-C2).

    intra: every image with itself. cross_image: within each domain, in batch order, each
    image with the next one (cyclically); none for a domain with a single image.
    cross_domain: the j-th image of one domain with the (j mod n)-th image of the other, in
    both directions. The batch is already a random draw, so no generator is needed.
    """
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


def mcu_loss(
    batch: PixelBatch,
    settings: MCUSettings,
    *,
    num_classes: int,
    weight: Tensor | None = None,
    generator: torch.Generator | None = None,
    weight_bound: float | None = None,
) -> dict[str, Tensor]:
    """Contrastive losses of the enabled MCU levels (III-C2, Eq. 9-11).

    Anchors: up to ``max_anchors_per_class`` of each image's ``anchor`` pixels per class.
    Samples: up to ``max_samples_per_class`` labelled pixels per class of the paired image
    (:func:`level_pairs`); in the intra level the chosen anchors are left out of the
    samples. c2c uses the centres of :func:`trainer.learning.centres.center_units`. Each loss
    is the mean of ``-log H`` over all pairs of its level. ``weight``: the (C, C) DCCM
    ``w[u, v]``, used as ``settings.weight_mode`` says.

    Same value as the per-pair definition (``tests/trainer/learning/contrast_reference.py``)
    whenever the caps do not bind. Vectorised: anchors and samples are drawn once per image
    for all levels (the intra samples and the cross-image samples of an image are each a
    uniform draw), embeddings are normalised once, and one similarity matrix between all
    anchors (pixels and centres) and all samples serves every level and both kinds: each
    (anchor, positive) term takes its negatives from the positive's own image (unit).

    Fixed sizes, no host sync: anchors and samples go into ``images * num_classes * cap``
    slots (``nonzero_static``), the unused ones in a unit linked to nothing; labels outside
    ``[0, num_classes)`` take part in nothing. ``weight_bound``: an upper bound of ``|weight|``
    known on the host (the DCCM's entries lie in [0, 1]), which decides whether the
    exponentials need float64; ``None`` reads it from ``weight`` (a host sync).

    Returns ``{"p2p_intra", "c2c_intra", "p2p_cross_image", ...}``, enabled entries only:
    scalars, 0 (attached to the embeddings) when a level has no pair (or the batch no image).
    """
    n_img = len(batch.domains)
    keys, links = _links(batch.domains, settings)
    zero = batch.emb.sum() * 0.0
    if not links:
        return {k: zero for k in keys}
    emb = normalize(batch.emb)
    anchors, samples = _units(batch, emb, settings, num_classes, generator)
    counts, unit_links = _link_tables(len(keys), 2 * n_img + 1, links)
    most = max(1, settings.max_samples_per_class) if settings.fixed_shapes else None
    options = NceOptions(
        settings.temperature, settings.weight_mode, num_classes, most, weight_bound
    )
    totals, n_pairs = maybe_compiled(unit_info_nce, settings.compile)(
        anchors,
        samples,
        host_to_device(counts, emb.device),
        weight,
        options,
        host_to_device(unit_links, emb.device),
    )
    losses = totals / n_pairs.clamp_min(1.0)
    return {k: losses[i] for i, k in enumerate(keys)}


def _link_tables(n_keys: int, n_units: int, links: list[tuple[int, int, int]]) -> list[Tensor]:
    """On the host: (loss, anchor unit, sample unit) -> how often the loss pairs them, and
    (units, L) the sample units each anchor unit is linked to, ascending, -1 padded."""
    link = torch.tensor(links).T
    counts = torch.zeros(n_keys, n_units, n_units).index_put_(
        (link[0], link[1], link[2]), torch.ones(link.shape[1]), accumulate=True
    )
    per_unit = [sorted({v for _, u, v in links if u == unit}) for unit in range(n_units)]
    width = max(1, max(len(p) for p in per_unit))
    table = torch.tensor([p + [-1] * (width - len(p)) for p in per_unit])
    return [counts, table]


def _units(
    batch: PixelBatch,
    emb: Tensor,
    settings: MCUSettings,
    num_classes: int,
    generator: torch.Generator | None,
) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
    """Anchors (emb, label, unit) and samples (emb, label, unit, category) of the enabled
    kinds, pixels first, then centres."""
    labeled = (batch.label >= 0) & (batch.label < num_classes)
    anchors: list[tuple[Tensor, ...]] = []
    samples: list[tuple[Tensor, ...]] = []  # + category (see unit_info_nce)
    if settings.p2p:
        a, s = _pixel_units(batch, emb, labeled, settings, num_classes, generator)
        anchors.append(a)
        samples.append(s)
    if settings.c2c:
        pixels = (batch.center, batch.label, batch.image)
        scope = settings.center_scope
        cen = center_units(pixels, batch.domains, emb, num_classes, scope, batch.centres)
        anchors.append(cen)
        samples.append((*cen, torch.full_like(cen[1], 1 if settings.c2c_self_positive else 2)))
    return _concat(anchors), _concat(samples)


def _concat(parts: list[tuple[Tensor, ...]]) -> tuple[Tensor, ...]:
    """Field-wise concatenation of the pixel and the centre units (no copy for one part)."""
    return tuple(torch.cat(t) if len(t) > 1 else t[0] for t in zip(*parts, strict=True))


def _links(
    domains: list[int], settings: MCUSettings
) -> tuple[list[str], list[tuple[int, int, int]]]:
    """The enabled losses' names and their (loss, anchor unit, sample unit) links: image i's
    pixels are unit i, its class centres unit ``len(domains) + i``."""
    n_img = len(domains)
    keys: list[str] = []
    links: list[tuple[int, int, int]] = []
    for level in settings.levels():
        pairs = level_pairs(domains, level)
        for kind, off in (("p2p", 0), ("c2c", n_img)):
            if settings.p2p if kind == "p2p" else settings.c2c:
                links += [(len(keys), off + i, off + j) for i, j in pairs]
                keys.append(f"{kind}_{level}")
    return keys, links


def _pixel_units(
    batch: PixelBatch,
    emb: Tensor,
    labeled: Tensor,
    settings: MCUSettings,
    num_classes: int,
    generator: torch.Generator | None,
) -> tuple[tuple[Tensor, Tensor, Tensor], tuple[Tensor, Tensor, Tensor, Tensor]]:
    """Pixel anchors (emb, label, unit) and samples (+ category) of every image, capped, in
    fixed-size slots; unused slots are in unit ``2 * images`` (linked to nothing), label 0."""
    label, image = batch.label, batch.image
    n_img = len(batch.domains)
    group = image * (num_classes + 1) + torch.where(labeled, label, num_classes)
    chosen = cap_mask(group, batch.anchor & labeled, settings.max_anchors_per_class, generator)
    ranked = _ranked(group, generator)
    intra_ok = _capped(ranked, labeled & ~chosen, settings.max_samples_per_class)
    cross_ok = _capped(ranked, labeled, settings.max_samples_per_class)
    cells = n_img * num_classes
    fixed = settings.fixed_shapes
    a_idx, a_ok = _slots(chosen, cells * max(settings.max_anchors_per_class, 0), fixed)
    s_idx, s_ok = _slots(
        intra_ok | cross_ok, cells * 2 * max(settings.max_samples_per_class, 0), fixed
    )
    cat = 1 - intra_ok[s_idx].long() + cross_ok[s_idx].long()
    dump = 2 * n_img
    return (
        emb[a_idx],
        torch.where(a_ok, label[a_idx], 0),
        torch.where(a_ok, image[a_idx], dump),
    ), (
        emb[s_idx],
        torch.where(s_ok, label[s_idx], 0),
        torch.where(s_ok, image[s_idx], dump),
        cat,
    )


def _slots(mask: Tensor, bound: int, fixed: bool = True) -> tuple[Tensor, Tensor]:
    """Indices of ``mask``'s True items in ``min(len, bound)`` slots (ascending, no sync) and
    which slots are used; unused slots point at the last item. ``fixed=False``: exactly the
    True items (a host sync)."""
    if not fixed:
        idx = mask.nonzero().squeeze(1)
        return idx, torch.ones_like(idx, dtype=torch.bool)
    n = mask.numel()
    idx = torch.nonzero_static(mask, size=min(n, bound), fill_value=n).squeeze(1)
    return idx.clamp(max=max(n - 1, 0)), idx < n
