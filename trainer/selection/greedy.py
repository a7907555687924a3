"""Greedy picks with window blanking (RIPU's selection loop), computed by sweeps of peaks.

RIPU's loop (BIT-DA/RIPU ``core/active/build.py``) takes the highest-scoring pixel of an image,
blanks the ``(2r+1)^2`` window around it and repeats. Run pick by pick that is one pass over
the image per pixel asked (hundreds per image here). The same picks come from a few passes:
a candidate whose rank is the highest among the candidates in its own window is picked by the
loop (nothing that could blank it ranks above it), so each pass takes every such peak at once
and blanks their windows, until no candidate is left (:func:`sweep`). The loop picks in
descending rank, so its first ``q`` picks are the ``q`` best of the sweep's picks. Windows are
square (Chebyshev distance), so every window maximum and dilation is two 1-D max-pools.

Ties: RIPU's ``torch.max`` takes the first pixel in raster order; here equal scores are ranked
in a fixed pseudo-random order of the pixels. Raster order turns a plateau (zero impurity
covers most of a confident image) into a wavefront of ``(H + W) / (r + 1)`` passes (512 passes,
56 s on one core at 512x1024), a random order into a few.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def box_max(x: torch.Tensor, radius: int) -> torch.Tensor:
    """(H,W) or (N,H,W) float: the maximum over the ``(2r+1)^2`` window (in-image part)."""
    if radius <= 0:
        return x.clone()
    k = 2 * radius + 1
    y = x.reshape(-1, 1, *x.shape[-2:])
    y = F.max_pool2d(y, (1, k), stride=1, padding=(0, radius))
    y = F.max_pool2d(y, (k, 1), stride=1, padding=(radius, 0))
    return y.reshape(x.shape)


def dilate(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """(H,W) or (N,H,W) bool: pixels within Chebyshev distance ``radius`` of a true pixel."""
    if radius <= 0:
        return mask.clone()
    return box_max(mask.float(), radius) > 0


def ranks(score: torch.Tensor) -> torch.Tensor:
    """(H,W) float unique ranks, higher first; equal scores in a fixed pseudo-random order of
    the pixels (a multiplicative hash of the index, a bijection below 2^32)."""
    flat = score.reshape(-1).float()
    idx = torch.arange(flat.numel(), device=flat.device)
    shuffled = torch.argsort((idx * 2654435761) % 2**32)
    order = shuffled[torch.argsort(flat[shuffled], descending=True, stable=True)]
    rank = torch.empty_like(flat)
    rank[order] = torch.arange(flat.numel() - 1, -1, -1, device=flat.device, dtype=flat.dtype)
    return rank.view(score.shape)


def sweep(rank: torch.Tensor, candidates: torch.Tensor, radius: int) -> torch.Tensor:
    """(H,W) bool: every pick of the greedy loop over ``candidates`` with ``radius`` blanking
    (until no candidate is left). One host sync per pass."""
    picks = torch.zeros_like(candidates)
    cand = candidates.clone()
    while bool(cand.any()):
        r = torch.where(cand, rank, -1.0)
        peak = cand & (r >= box_max(r, radius))
        picks |= peak
        cand &= ~dilate(peak, radius)
    return picks


def _box_count(mask: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor, r: int) -> torch.Tensor:
    """(P,) long: true pixels of ``mask`` (H,W) in the ``(2r+1)^2`` window around each pick."""
    h, w = mask.shape
    s = F.pad(mask.long().cumsum(0).cumsum(1), (1, 0, 1, 0))
    y0, y1 = (ys - r).clamp(min=0), (ys + r + 1).clamp(max=h)
    x0, x1 = (xs - r).clamp(min=0), (xs + r + 1).clamp(max=w)
    return s[y1, x1] - s[y0, x1] - s[y1, x0] + s[y0, x0]


def _window(h: int, w: int, y: int, x: int, r: int, device: torch.device) -> torch.Tensor:
    win = torch.zeros(h, w, dtype=torch.bool, device=device)
    win[max(0, y - r) : y + r + 1, max(0, x - r) : x + r + 1] = True
    return win


def _capped(cls: torch.Tensor, cost: torch.Tensor, room: torch.Tensor) -> torch.Tensor:
    """(P,) bool: picks (in rank order) kept while their class's labeled pixels stay within
    ``room[class]``."""
    onehot = F.one_hot(cls, room.numel()) * cost[:, None]
    return (onehot.cumsum(0) * (onehot > 0)).amax(1) <= room[cls]


def _one_sweep(
    rank: torch.Tensor,
    cand: torch.Tensor,
    open_: torch.Tensor,
    left: int,
    block: int,
    label: int,
    cls: torch.Tensor | None,
    room: torch.Tensor | None,
) -> torch.Tensor:
    """(H,W) bool pixels one sweep labels: its picks in rank order (dropping those over their
    class's room), each labeling the ``open_`` pixels of its ``label`` window, until ``left``
    pixels; the pick that passes ``left`` labels its window's first pixels in raster order."""
    ys, xs = sweep(rank, cand, block).nonzero(as_tuple=True)
    order = torch.argsort(rank[ys, xs], descending=True)
    ys, xs = ys[order], xs[order]
    cost = _box_count(open_, ys, xs, label)
    if cls is not None and room is not None:
        keep = _capped(cls[ys, xs], cost, room)
        ys, xs, cost = ys[keep], xs[keep], cost[keep]
    full = cost.cumsum(0) <= left
    centres = torch.zeros_like(open_)
    centres[ys[full], xs[full]] = True
    out = dilate(centres, label) & open_
    rest = left - int(out.sum())
    nxt = int(full.sum())
    if rest > 0 and nxt < ys.numel():  # the last pick is cut in raster order
        win = _window(*open_.shape, int(ys[nxt]), int(xs[nxt]), label, open_.device)
        part = (win & open_ & ~out).reshape(-1)
        out |= (part & (part.cumsum(0) <= rest)).view(open_.shape)
    return out


def greedy_select(
    score: torch.Tensor,
    eligible: torch.Tensor,
    unasked: torch.Tensor,
    quotas: torch.Tensor,
    block_radius: int,
    label_radius: int = 0,
    classes: torch.Tensor | None = None,
    class_caps: torch.Tensor | None = None,
) -> torch.Tensor:
    """Greedy picks with window blanking, image by image.

    In every image: pick the eligible pixel of highest score, label the unasked pixels of the
    ``(2 label_radius + 1)^2`` window around it, blank the ``(2 block_radius + 1)^2`` window
    around it, repeat until the image's quota is labeled; the last window is cut in raster
    order. With ``classes`` (N,H,W) long and ``class_caps`` (N,) long, picks (in score order)
    whose class would pass ``class_caps[n]`` labeled pixels are dropped. When the eligible
    pixels run out first (or there are none to begin with: every pixel blanked by earlier
    rounds), the rest is taken by fresh sweeps over the unasked pixels not yet labeled,
    without the earlier blanking; the class caps hold for the first sweep only. So every image
    gets exactly ``min(quota, unasked)`` pixels.

    Args:
        score: (N,H,W) float, higher is picked first.
        eligible: (N,H,W) bool, where a pick may land at first (e.g. unasked, not blanked).
        unasked: (N,H,W) bool, pixels that may be labeled.
        quotas: (N,) long, pixels to label per image.

    Returns:
        (N,H,W) bool, a subset of ``unasked`` with ``min(quotas[n], unasked[n].sum())`` pixels
        in image ``n``.
    """
    out = torch.zeros_like(unasked)
    for i, quota in enumerate(quotas.tolist()):
        rank, taken = ranks(score[i]), out[i]
        cls = None if classes is None else classes[i].long()
        room = None
        if cls is not None and class_caps is not None:
            room = torch.full((int(cls.max()) + 1,), int(class_caps[i]), device=cls.device)
        cand = eligible[i] & unasked[i]
        while int(taken.sum()) < quota:
            open_ = unasked[i] & ~taken
            if not bool(cand.any()):  # nothing eligible: the blanking is lifted
                cand = open_
                if not bool(cand.any()):
                    break
            left = quota - int(taken.sum())
            taken |= _one_sweep(rank, cand, open_, left, block_radius, label_radius, cls, room)
            cand, cls, room = unasked[i] & ~taken, None, None  # a fresh sweep, caps lifted
    return out
