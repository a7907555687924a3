"""Pixel selection: uniform / top-k pickers, RIPU, Algorithm 1 and adaptive sampling.

Every selector returns a bool mask of shape (N, H, W) so that masks compose with
``&``, ``|`` and ``~``. Randomness only comes in through a ``torch.Generator``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from trainer.constants import Group
from trainer.uncertainty import entropy

Phase = Literal["high", "medium", "done"]


def device_generator(
    generator: torch.Generator | None, device: torch.device | str
) -> torch.Generator | None:
    """A generator on ``device`` driven by ``generator`` (the trainer's generator is on the CPU).

    The same generator when it already lives on ``device`` (so CPU runs draw exactly from it);
    otherwise a new generator on ``device``, seeded from a single 64-bit draw of
    ``generator``: random numbers for large device tensors are made on the device (no
    host-side ``randperm`` of millions of items, no host-to-device copy), and the stream stays
    a deterministic function of ``generator``'s state. ``None`` stays ``None``.
    """
    if generator is None:
        return None
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    if generator.device == device:
        return generator
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))  # host-side, no device sync
    return torch.Generator(device=device).manual_seed(seed)


def thinning_target(k: int) -> float:
    """Expected survivors per group of the Bernoulli pre-thinning in :func:`uniform_select` and
    :func:`sample_per_group`: ``k + 8 sqrt(k) + 64``.

    Keeping each of ``n`` candidates with probability ``min(1, mu / n)`` leaves fewer than
    ``k`` of them with probability at most ``exp(-(mu - k)^2 / (2 mu)) < 1e-15`` (Chernoff),
    and the callers then fall back to keeping every candidate, so results stay exact.
    """
    return k + 8.0 * math.sqrt(max(k, 0)) + 64.0


def uniform_select(
    candidates: torch.Tensor, k: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Choose ``min(k, candidates.sum())`` candidate pixels uniformly without replacement.

    Exactly uniform over the ``k``-subsets of the candidates: every pixel gets an i.i.d.
    uniform key (drawn on the candidates' device, :func:`device_generator`) and the ``k``
    candidates with the smallest keys are chosen. To keep the cost O(pixels) and the sort
    small, candidates are first thinned to those with ``key < mu / n`` (``n`` candidates,
    ``mu`` = :func:`thinning_target`), which holds the ``k`` smallest keys whenever at least
    ``k`` survive; otherwise (``n < k``, or a < 1e-15 event) every candidate is used. One
    host sync (the ``nonzero`` of the survivors) in the usual case.

    Args:
        candidates: (N, H, W) bool, pixels that may be chosen.
        k: how many to choose (``k <= 0`` chooses none).
        generator: source of randomness.

    Returns:
        (N, H, W) bool mask, a subset of ``candidates``.
    """
    flat = candidates.reshape(-1)
    mask = torch.zeros_like(flat, dtype=torch.bool)
    k = max(0, min(int(k), flat.numel()))
    if k == 0:
        return mask.view(candidates.shape)
    gen = device_generator(generator, flat.device)
    key = torch.rand(flat.numel(), generator=gen, device=flat.device)
    count = flat.sum()
    rate = (thinning_target(k) / count.clamp_min(1)).clamp(max=2.0)  # 2: keep all (key < 1)
    idx = (flat & (key < rate)).nonzero().squeeze(1)
    if idx.numel() < k:  # fewer than k candidates, or the thinning was unlucky (< 1e-15)
        idx = flat.nonzero().squeeze(1)
    if idx.numel() > k:
        idx = idx[torch.topk(key[idx], k, largest=False, sorted=False).indices]
    mask[idx] = True
    return mask.view(candidates.shape)


def count_ids(ids: torch.Tensor, n: int) -> torch.Tensor:
    """(n,) long occurrences of each id in ``ids`` (values in ``[0, n)``), without a host sync:
    ``bincount`` on the CPU, ``scatter_add`` on a GPU (where ``bincount`` reads the maximum)."""
    if ids.device.type == "cpu":
        return torch.bincount(ids, minlength=n)
    return torch.zeros(n, dtype=torch.long, device=ids.device).scatter_add_(
        0, ids, torch.ones_like(ids)
    )


def sample_per_group(
    group: torch.Tensor,
    oks: list[torch.Tensor],
    caps: list[int],
    num_groups: int,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Independent uniform per-group capped draws over a large flat set, without a full sort.

    Draw ``j`` chooses, in every group ``g``, ``min(caps[j], n_jg)`` of the ``n_jg`` items
    with ``oks[j]`` of that group, uniformly without replacement (the items with the
    ``caps[j]`` smallest of i.i.d. uniform keys), independently of the other draws: the same
    distribution as :func:`trainer.contrast.cap_mask` per draw. Cost: O(P) element-wise work
    on the device (keys, per-group counts by ``scatter_add``, no ``bincount``), then a sort of
    only the items that survive a Bernoulli pre-thinning with rate ``mu / n_jg``
    (``mu`` = :func:`thinning_target` of the cap), i.e. O(groups * cap) items. A group left
    with fewer than ``min(cap, n)`` survivors (probability < 1e-15) is redone with all of its
    items, so the draw is exact. Two host syncs (the survivors' ``nonzero`` and that check).

    Args:
        group: (P,) long group ids, in ``[0, num_groups)`` wherever some ``oks[j]`` is true.
        oks: per draw, (P,) bool items that may be chosen.
        caps: per draw, the most items per group (``<= 0``: none).
        num_groups: number of group ids.
        generator: source of randomness (keys are made on ``group``'s device).

    Returns:
        ``(idx, chosen)``: idx (K,) long ascending, the items chosen by at least one draw;
        chosen[j] (K,) bool, whether draw ``j`` chose ``idx[i]``.
    """
    dev = group.device
    gen = device_generator(generator, dev)
    g_all = [torch.where(ok, group, num_groups) for ok in oks]  # num_groups: not eligible
    keys, counts, rates = [], [], []
    for gj, cap in zip(g_all, caps, strict=True):
        keys.append(torch.rand(group.numel(), generator=gen, device=dev))
        n = count_ids(gj, num_groups + 1)
        n[num_groups] = 0
        counts.append(n)
        rate = (thinning_target(cap) / n.clamp_min(1)).clamp(max=2.0)
        rate[num_groups] = 0.0
        rates.append(rate if cap > 0 else torch.zeros_like(rate))
    while True:
        survive = [key < rate[gj] for key, rate, gj in zip(keys, rates, g_all, strict=True)]
        keep = survive[0]
        for s in survive[1:]:
            keep = keep | s
        idx = keep.nonzero().squeeze(1)
        g = group[idx]
        chosen, short = [], []
        for j, cap in enumerate(caps):
            cand = survive[j][idx]
            comp = torch.where(cand, g.double() + keys[j][idx].double(), math.inf)
            order = torch.argsort(comp)
            g_s, cand_s = g[order], cand[order]
            start = torch.ones_like(cand_s)
            start[1:] = g_s[1:] != g_s[:-1]
            pos = torch.arange(order.numel(), device=dev)
            rank = pos - torch.cummax(torch.where(start, pos, 0), 0).values
            pick = torch.empty_like(cand)
            pick[order] = cand_s & (rank < cap)
            chosen.append(pick)
            kept = count_ids(torch.where(cand, g, num_groups), num_groups + 1)
            short.append(kept < counts[j].clamp(max=max(cap, 0)))
        short_any = torch.stack(short)
        if not bool(short_any.any()):  # < 1e-15 per group and draw
            sel = torch.stack(chosen).any(0)
            return idx[sel], [c[sel] for c in chosen]
        for j in range(len(caps)):
            rates[j] = torch.where(short_any[j], 2.0, rates[j])


def top_k_select(score: torch.Tensor, candidates: torch.Tensor, k: int) -> torch.Tensor:
    """Choose the ``min(k, candidates.sum())`` candidates with the highest score.

    Args:
        score: (N, H, W) float score (e.g. entropy or RIPU).
        candidates: (N, H, W) bool.
        k: how many to choose; ties are broken by ``torch.topk``.

    Returns:
        (N, H, W) bool mask, a subset of ``candidates``.
    """
    flat_c = candidates.reshape(-1)
    k = max(0, min(int(k), int(flat_c.sum())))
    masked = score.reshape(-1).float().masked_fill(~flat_c, float("-inf"))
    mask = torch.zeros_like(flat_c, dtype=torch.bool)
    if k > 0:
        mask[torch.topk(masked, k).indices] = True
    return mask.view(candidates.shape)


def region_impurity(pred: torch.Tensor, num_classes: int, kernel_size: int = 3) -> torch.Tensor:
    """Region impurity of RIPU (Xie et al., CVPR 2022).

    Args:
        pred: (N, H, W) long predicted classes in ``[0, num_classes)``.
        num_classes: ``C``.
        kernel_size: odd side ``k`` of the square neighbourhood; at the border only the
            pixels inside the image count.

    Returns:
        (N, H, W) entropy of the predicted-class histogram in the ``k x k``
        neighbourhood, divided by ``log(C)``: 0 in a pure region.
    """
    onehot = F.one_hot(pred.long(), num_classes).permute(0, 3, 1, 2).float()
    hist = F.avg_pool2d(
        onehot, kernel_size, stride=1, padding=kernel_size // 2, count_include_pad=False
    )
    return entropy(hist)


def ripu_score(
    prob: torch.Tensor, pred: torch.Tensor, num_classes: int, kernel_size: int = 3
) -> torch.Tensor:
    """RIPU pixel score: region impurity times normalised prediction entropy.

    Args:
        prob: (N, C, H, W) softmax probabilities.
        pred: (N, H, W) long predictions (usually ``prob.argmax(1)``).
        num_classes: ``C``.
        kernel_size: neighbourhood side for :func:`region_impurity`.

    Returns:
        (N, H, W) score in [0, 1].
    """
    return region_impurity(pred, num_classes, kernel_size) * entropy(prob)


def per_iteration_quota(remaining: int, iterations_left: int) -> int:
    """Pixels to spend this iteration: ``ceil(remaining / max(1, iterations_left))``.

    Clamped to ``[0, remaining]``; a negative ``remaining`` gives 0.
    """
    if remaining <= 0:
        return 0
    return min(remaining, math.ceil(remaining / max(1, iterations_left)))


@dataclass
class AlgorithmOneState:
    """Thresholds of Algorithm 1, on the scale of ``S`` from Eq. 1.

    ``S = E/log(C) + 0.5 KL``: the entropy term lies in [0, 1]. ``pi_high = 0.95``
    starts with almost no pixel in G_h (the paper's "large value", ~1 % of pixels)
    and decays by ``decay`` (r = 0.9) per epoch; ``pi_low = 0.05`` keeps in G_l only
    pixels whose top class has probability of about 0.98 or more (19 classes), the
    confident pixels used for pseudo labels and class centres.
    """

    pi_high: float = 0.95
    pi_low: float = 0.05
    decay: float = 0.9


class ActiveSampler:
    """Algorithm 1 with footnote 3: query half of G_h until M_e/2, then G_m, then stop.

    The budget split for integer pixel counts: the high phase owns ``M_e // 2``
    pixels, the medium phase owns ``M_e - M_e // 2`` (the odd pixel goes to G_m).
    The counts ``spent_high`` / ``spent_medium`` come from the caller (the server's
    budget), so this object only holds the thresholds.
    """

    def __init__(self, state: AlgorithmOneState | None = None) -> None:
        self.state = state if state is not None else AlgorithmOneState()

    @staticmethod
    def phase(expected: int, spent_high: int, spent_medium: int) -> Phase:
        """``"high"`` while ``M_a < M_e // 2``, then ``"medium"`` until the rest is spent."""
        if spent_high < expected // 2:
            return "high"
        if spent_medium < expected - expected // 2:
            return "medium"
        return "done"

    def select(
        self,
        groups: torch.Tensor,
        unlabeled: torch.Tensor,
        expected: int,
        spent_high: int,
        spent_medium: int,
        medium_quota: int,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, Phase]:
        """Pixels to query for this batch.

        Args:
            groups: (N, H, W) group ids from :func:`trainer.uncertainty.partition`.
            unlabeled: (N, H, W) bool, pixels never queried before.
            expected: ``M_e``, the whole budget in pixels.
            spent_high, spent_medium: pixels already queried in each phase.
            medium_quota: pixels to query per batch in the medium phase
                (e.g. :func:`per_iteration_quota`).
            generator: source of randomness.

        Returns:
            ``(mask, phase)``: (N, H, W) bool mask of pixels to query and the phase.
            High: ``ceil(|G_h ∩ unlabeled| / 2)`` pixels uniformly (footnote 3; the
            ceiling lets a lone pixel be queried), capped at ``M_e // 2 - spent_high``.
            Medium: ``min(medium_quota, remaining)`` pixels of ``G_m ∩ unlabeled``.
            Done: an empty mask.
        """
        phase = self.phase(expected, spent_high, spent_medium)
        if phase == "high":
            candidates = (groups == Group.HIGH) & unlabeled
            k = min((int(candidates.sum()) + 1) // 2, expected // 2 - spent_high)
        elif phase == "medium":
            candidates = (groups == Group.MEDIUM) & unlabeled
            k = min(medium_quota, expected - expected // 2 - spent_medium)
        else:
            return torch.zeros_like(unlabeled, dtype=torch.bool), phase
        return uniform_select(candidates, k, generator), phase

    def end_epoch(self) -> float:
        """Decay ``pi_high *= decay`` (Alg. 1 line 7), never below ``pi_low``.

        Algorithm 1 decays only while ``M_a < M_e / 2``: call it in the high phase.
        """
        s = self.state
        s.pi_high = max(s.pi_low, s.pi_high * s.decay)
        return s.pi_high


def adaptive_sample(
    groups: torch.Tensor,
    labeled: torch.Tensor,
    label_group: torch.Tensor,
    k: int | None,
    generator: torch.Generator | None = None,
    min_low: int = 64,
) -> dict[str, torch.Tensor]:
    """Adaptive sampling (III-B2): pixels of each group that enter the loss.

    Args:
        groups: (N, H, W) current group ids.
        labeled: (N, H, W) bool, pixels with a true label.
        label_group: (N, H, W) long, the group a labeled pixel was queried from,
            ``IGNORE_INDEX`` where unlabeled.
        k: pseudo-labelled pixels to draw; ``None`` means
            ``max(|high|, |medium|)``, or ``min_low`` when nothing is labeled.
        generator: source of randomness.
        min_low: pseudo-label count when ``k is None`` and the batch has no label.

    Returns:
        ``{"high", "medium", "low"}`` -> (N, H, W) bool masks. "high": labeled pixels
        queried from G_h; "medium": every other labeled pixel (queried from G_m, or of
        unknown origin: true labels are never dropped); "low": ``k`` pixels drawn
        uniformly from the current G_l that are not labeled. Labeled groups larger than
        ``k`` are kept whole: true labels are precious and few.
    """
    high = labeled & (label_group == Group.HIGH)
    medium = labeled & ~high
    if k is None:
        k = int(torch.maximum(high.sum(), medium.sum())) or min_low  # one host sync
    low = uniform_select((groups == Group.LOW) & ~labeled, k, generator)
    return {"high": high, "medium": medium, "low": low}
