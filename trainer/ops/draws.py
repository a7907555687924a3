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
    """Expected survivors per group of the Bernoulli pre-thinning in :func:`sample_per_group`:
    ``k + 8 sqrt(k) + 64``.

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
    candidates with the smallest keys are chosen: one ``topk`` of the keys, the others' keys
    set to 2, so fewer than ``k`` candidates are all chosen. Fixed sizes only: no host sync.

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
    smallest = torch.topk(torch.where(flat, key, 2.0), k, largest=False, sorted=False)
    mask.scatter_(0, smallest.indices, smallest.values < 1.0)
    return mask.view(candidates.shape)


def host_to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``t`` (on the host) on ``device``; to a GPU through pinned memory without blocking the
    host (a pageable copy is a host sync)."""
    device = torch.device(device)
    if device.type != "cuda" or t.device.type == "cuda":
        return t.to(device)
    return t.pin_memory().to(device, non_blocking=True)


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
    distribution as :func:`trainer.learning.contrast.cap_mask` per draw. Cost: O(P) element-wise
    work
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
    draw = _prepare(group, oks, caps, num_groups, generator)
    while True:
        idx, chosen, short_any = _survivor_draw(group, caps, num_groups, draw, None)
        if not bool(short_any.any()):  # < 1e-15 per group and draw
            sel = torch.stack(chosen).any(0)
            return idx[sel], [c[sel] for c in chosen]
        rates = draw[2]
        for j in range(len(caps)):
            rates[j] = torch.where(short_any[j], 2.0, rates[j])


def sample_per_group_padded(
    group: torch.Tensor,
    oks: list[torch.Tensor],
    caps: list[int],
    num_groups: int,
    max_groups: int,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
    """:func:`sample_per_group` in fixed sizes, without a host sync: the same keys and the same
    draw whenever the exact one needs no fallback.

    ``max_groups``: how many group ids can hold ok items (e.g. images x classes). Survivors of
    the thinning go into a buffer of ``1.25 x`` their largest expected count (+ a margin), the
    chosen items into ``max_groups * sum(caps)`` slots. Returns ``(idx, chosen, short)``: idx
    (K,) long ascending, ``group.numel()`` in the unused slots (their ``chosen`` are False);
    ``short`` a 0-dim bool tensor, True when some group came out with fewer than
    ``min(cap, n)`` (the fallback the exact draw would take, probability < 1e-15 per group and
    draw, or a full buffer); nothing is redone then, so the caller should report it.
    """
    n = group.numel()
    mu = max_groups * sum(thinning_target(max(c, 0)) for c in caps)
    size = min(n, int(1.25 * mu + 10 * math.sqrt(mu) + 64))
    out = min(n, max_groups * sum(max(c, 0) for c in caps))
    idx, chosen, short_any = _survivor_draw(
        group, caps, num_groups, _prepare(group, oks, caps, num_groups, generator), size
    )
    sel = torch.stack(chosen).any(0) if chosen else torch.zeros_like(idx, dtype=torch.bool)
    pos = torch.nonzero_static(sel, size=out, fill_value=size).squeeze(1)
    ok = pos < size
    pos = pos.clamp(max=max(size - 1, 0))
    return (
        torch.where(ok, idx[pos], n),
        [c[pos] & ok for c in chosen],
        short_any.any(),
    )


_Prepared = tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]


def _prepare(
    group: torch.Tensor,
    oks: list[torch.Tensor],
    caps: list[int],
    num_groups: int,
    generator: torch.Generator | None,
) -> _Prepared:
    """Per draw: group ids (``num_groups`` where not ok), keys, thinning rates, counts."""
    dev = group.device
    gen = device_generator(generator, dev)
    g_all = [torch.where(ok, group, num_groups) for ok in oks]  # num_groups: not eligible
    keys = [torch.rand(group.numel(), generator=gen, device=dev) for _ in caps]
    counts = [count_ids(gj, num_groups + 1) for gj in g_all]
    rates = [_thinning_rate(n, cap, num_groups) for n, cap in zip(counts, caps, strict=True)]
    return g_all, keys, rates, counts


def _survivor_draw(
    group: torch.Tensor,
    caps: list[int],
    num_groups: int,
    draw: _Prepared,
    size: int | None,
) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
    """One thinning pass: survivors' indices (``size`` slots, or as many as survive: a host
    sync), each draw's choice among them, and (draws, groups) bool: groups left short."""
    g_all, keys, rates, counts = draw
    survive = [key < rate[gj] for key, rate, gj in zip(keys, rates, g_all, strict=True)]
    keep = survive[0]
    for s in survive[1:]:
        keep = keep | s
    n = group.numel()
    if size is None:
        idx = keep.nonzero().squeeze(1)
        at, valid = idx, None
    else:
        idx = torch.nonzero_static(keep, size=size, fill_value=n).squeeze(1)
        valid = idx < n
        at = idx.clamp(max=max(n - 1, 0))
    g = group[at]
    chosen, short = [], []
    for j, cap in enumerate(caps):
        cand = survive[j][at] if valid is None else survive[j][at] & valid
        chosen.append(_first_per_group(g, cand, keys[j][at], cap))
        kept = count_ids(torch.where(cand, g, num_groups), num_groups + 1)
        short.append(kept < counts[j].clamp(max=max(cap, 0)))
    return idx, chosen, torch.stack(short)


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
