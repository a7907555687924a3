"""Greedy picks with window blanking (RIPU's selection loop), computed by passes of peaks.

RIPU's loop (BIT-DA/RIPU ``core/active/build.py``) takes the highest-scoring pixel of an image,
blanks the ``(2r+1)^2`` window around it and repeats: one pass over the image per pixel asked.
The same picks come from a few passes: a candidate that ranks first among the candidates of
its own window is picked by the loop (nothing that could blank it ranks above it), so each
pass takes every such peak at once and blanks their windows, until no candidate is left
(:func:`sweep`). The loop picks in descending rank, so its first ``q`` picks are the ``q`` best
of the sweep's picks, and a sweep may stop once the picks above every candidate left suffice.

A pass never looks at every window. The image is cut into cells of side ``r + 1``: a cell lies
inside the window of each of its pixels, so a peak is the best candidate of its cell, and its
window meets only the 8 cells around it. A cell's best is no peak when a neighbour cell's best
ranks higher and lies in its window; it is one when no neighbour cell's best ranks higher;
only the rest (a higher best outside the window) read their whole window.

Ties: RIPU's ``torch.max`` takes the first pixel in raster order; here every pixel gets a
unique int64 key (:func:`keys`), the score's order first, then a fixed pseudo-random order of
the pixels. Raster order turns a plateau (zero impurity covers most of a confident image) into
a wavefront of ``(H + W) / (r + 1)`` passes, a random order into a few.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

NONE = torch.iinfo(torch.int64).min  # the key of "no candidate"
_NEIGHBOURS = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx]


def box_sum(x: torch.Tensor, radius: int) -> torch.Tensor:
    """(..., H, W) integer: the sum over the in-image part of the ``(2r+1)^2`` window, by two
    cumulative sums (exact in integer arithmetic, any radius)."""
    for dim in (x.dim() - 1, x.dim() - 2):
        n = x.shape[dim]
        c = x.cumsum(dim)
        edge = [-1] * x.dim()
        edge[dim] = radius + 1
        lead = torch.zeros_like(c.narrow(dim, 0, 1)).expand(*edge)
        edge[dim] = radius
        # e[j] = (sum of the first clamp(j - radius, 0, n) entries)
        e = torch.cat([lead, c, c.narrow(dim, n - 1, 1).expand(*edge)], dim)
        x = e.narrow(dim, 2 * radius + 1, n) - e.narrow(dim, 0, n)
    return x


def dilate(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """(H,W) or (N,H,W) bool: pixels within Chebyshev distance ``radius`` of a true pixel."""
    if radius <= 0:
        return mask.clone()
    return box_sum(mask.int(), radius) > 0


def keys(score: torch.Tensor) -> torch.Tensor:
    """(H,W) int64 unique keys in the order of ``score`` (higher first); equal scores in a
    fixed pseudo-random order of the pixels (a multiplicative hash of the index, a bijection
    below 2^32). The float's bits, made monotone, fill the high 32 bits, the hash the low."""
    bits = score.float().contiguous().view(torch.int32).long()
    ordered = torch.where(bits >= 0, bits, bits ^ 0x7FFFFFFF)
    idx = torch.arange(score.numel(), device=score.device).view(score.shape)
    return (ordered << 32) | ((idx * 2654435761) % 2**32)


def _ranked(ys: torch.Tensor, xs: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, ...]:
    order = torch.argsort(k, descending=True)
    return ys[order], xs[order], k[order]


def _canvas(key: torch.Tensor, candidates: torch.Tensor, radius: int) -> torch.Tensor:
    """The candidates' keys (NONE elsewhere) with a margin of at least ``radius`` of NONE on
    every side, so that every window lies inside, cut evenly in cells of side ``radius + 1``."""
    h, w = key.shape
    s = radius + 1
    hp, wp = -(-(h + 2 * radius) // s) * s, -(-(w + 2 * radius) // s) * s
    canvas = key.new_full((hp, wp), NONE)
    canvas[radius : radius + h, radius : radius + w] = key.masked_fill(~candidates, NONE)
    return canvas


def _peaks(canvas: torch.Tensor, radius: int, offsets: torch.Tensor):
    """One pass: ``((ys, xs, keys) of the peaks, the best key left)``, ``(None, NONE)`` when
    no candidate is left. Peaks are cell bests with no higher candidate in their window."""
    s = radius + 1
    (hp, wp), dev = canvas.shape, canvas.device
    cells = canvas.view(hp // s, s, wp // s, s)
    best = cells.amax((1, 3))
    top = int(best.max())
    if top == NONE:
        return None, NONE
    live = best > NONE
    ys, xs = (
        ((cells == best[:, None, :, None]) & live[:, None, :, None])
        .view(hp, wp)
        .nonzero(as_tuple=True)
    )
    kp = canvas[ys, xs]
    grid = canvas.new_full((hp // s + 2, wp // s + 2), NONE)
    grid[1:-1, 1:-1] = best
    where = torch.full((2, *grid.shape), -4 * (hp + wp), device=dev, dtype=torch.long)
    where[0, ys // s + 1, xs // s + 1], where[1, ys // s + 1, xs // s + 1] = ys, xs
    step = torch.tensor(_NEIGHBOURS, device=dev)
    ny, nx = (ys // s + 1)[:, None] + step[:, 0], (xs // s + 1)[:, None] + step[:, 1]
    higher = grid[ny, nx] > kp[:, None]
    inside = ((where[0, ny, nx] - ys[:, None]).abs() <= radius) & (
        (where[1, ny, nx] - xs[:, None]).abs() <= radius
    )
    peak = ~(higher & inside).any(1)
    check = peak & (higher & ~inside).any(1)  # a higher best outside the window: read it all
    if bool(check.any()):
        window = (ys[check] * wp + xs[check])[:, None] + offsets
        peak[check] = canvas.view(-1)[window].amax(1) == kp[check]
    return (ys[peak], xs[peak], kp[peak]), top


Enough = Callable[[torch.Tensor, torch.Tensor], bool]


def sweep(
    key: torch.Tensor, candidates: torch.Tensor, radius: int, enough: Enough | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(ys, xs, keys)`` of every pick of the greedy loop over ``candidates`` (H,W) bool with
    ``radius`` blanking, ranked (until no candidate is left). With ``enough(ys, xs)`` (ranked
    picks -> bool) the sweep stops once the picks ranked above every candidate left satisfy
    it, and returns those. One host sync per pass."""
    if radius <= 0:
        ys, xs = candidates.nonzero(as_tuple=True)
        return _ranked(ys, xs, key[ys, xs])
    canvas = _canvas(key, candidates, radius)
    wp = canvas.shape[1]
    d = torch.arange(-radius, radius + 1, device=key.device)
    offsets = (d[:, None] * wp + d[None, :]).reshape(1, -1)
    found = [(d[:0], d[:0], key.new_empty(0))]
    while True:
        got, top = _peaks(canvas, radius, offsets)
        if got is None:
            break
        if enough is not None and len(found) > 1:
            ys, xs, k = _ranked(*(torch.cat(f) for f in zip(*found, strict=True)))
            sure = k > top
            if enough(ys[sure] - radius, xs[sure] - radius):
                return ys[sure] - radius, xs[sure] - radius, k[sure]
        canvas.view(-1)[((got[0] * wp + got[1])[:, None] + offsets).reshape(-1)] = NONE
        found.append(got)
    ys, xs, k = _ranked(*(torch.cat(f) for f in zip(*found, strict=True)))
    return ys - radius, xs - radius, k


def _box_count(integral: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor, r: int) -> torch.Tensor:
    """(P,) long: pixels counted by ``integral`` (H+1,W+1) in the ``(2r+1)^2`` window around
    each pick (in-image part)."""
    h, w = integral.shape[0] - 1, integral.shape[1] - 1
    y0, y1 = (ys - r).clamp(min=0), (ys + r + 1).clamp(max=h)
    x0, x1 = (xs - r).clamp(min=0), (xs + r + 1).clamp(max=w)
    return integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]


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
    key: torch.Tensor,
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
    integral = None
    if label > 0:
        integral = F.pad(open_.long().cumsum(0).cumsum(1), (1, 0, 1, 0))

    def kept(ys: torch.Tensor, xs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        cost = torch.ones_like(ys) if integral is None else _box_count(integral, ys, xs, label)
        if cls is not None and room is not None:
            keep = _capped(cls[ys, xs], cost, room)
            ys, xs, cost = ys[keep], xs[keep], cost[keep]
        return ys, xs, cost

    ys, xs, _ = sweep(key, cand, block, lambda y, x: int(kept(y, x)[2].sum()) >= left)
    ys, xs, cost = kept(ys, xs)
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
        key, taken = keys(score[i]), out[i]
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
            taken |= _one_sweep(key, cand, open_, left, block_radius, label_radius, cls, room)
            cand, cls, room = unasked[i] & ~taken, None, None  # a fresh sweep, caps lifted
    return out
