"""Random draws without replacement: uniform, top-k and capped per group.

Every draw over pixels returns a bool mask of shape (N, H, W), so masks compose with ``&``,
``|`` and ``~``. Randomness only comes in through a ``torch.Generator``; random keys for
large device tensors are made on the device (:func:`device_generator`).
"""

from __future__ import annotations

import math

import torch


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
    keys = [torch.rand(group.numel(), generator=gen, device=dev) for _ in caps]
    counts = [count_ids(gj, num_groups + 1) for gj in g_all]
    rates = [_thinning_rate(n, cap, num_groups) for n, cap in zip(counts, caps, strict=True)]
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
            chosen.append(_first_per_group(g, cand, keys[j][idx], cap))
            kept = count_ids(torch.where(cand, g, num_groups), num_groups + 1)
            short.append(kept < counts[j].clamp(max=max(cap, 0)))
        short_any = torch.stack(short)
        if not bool(short_any.any()):  # < 1e-15 per group and draw
            sel = torch.stack(chosen).any(0)
            return idx[sel], [c[sel] for c in chosen]
        for j in range(len(caps)):
            rates[j] = torch.where(short_any[j], 2.0, rates[j])


def _thinning_rate(n: torch.Tensor, cap: int, num_groups: int) -> torch.Tensor:
    """Per group id, the keep rate of the pre-thinning (2: keep all); zeroes the count of the
    not-eligible id ``num_groups`` in ``n`` (in place)."""
    n[num_groups] = 0
    rate = (thinning_target(cap) / n.clamp_min(1)).clamp(max=2.0)
    rate[num_groups] = 0.0
    return rate if cap > 0 else torch.zeros_like(rate)


def _first_per_group(
    g: torch.Tensor, cand: torch.Tensor, key: torch.Tensor, cap: int
) -> torch.Tensor:
    """(K,) bool: in every group of ``g`` (K,), the ``cap`` candidates with the smallest
    ``key``, by one sort on (group, key)."""
    comp = torch.where(cand, g.double() + key.double(), math.inf)
    order = torch.argsort(comp)
    g_s, cand_s = g[order], cand[order]
    start = torch.ones_like(cand_s)
    start[1:] = g_s[1:] != g_s[:-1]
    pos = torch.arange(order.numel(), device=g.device)
    rank = pos - torch.cummax(torch.where(start, pos, 0), 0).values
    pick = torch.empty_like(cand)
    pick[order] = cand_s & (rank < cap)
    return pick


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
