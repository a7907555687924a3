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
        n, c = x.shape[dim], x.cumsum(dim)
        x = torch.empty_like(c)  # c[min(i + r, n - 1)] - c[i - r - 1] (0 below 0)
        m = max(0, n - radius)
        x.narrow(dim, 0, m).copy_(c.narrow(dim, min(radius, n), m))
        x.narrow(dim, m, n - m).copy_(c.narrow(dim, n - 1, 1).expand_as(x.narrow(dim, m, n - m)))
        if n > radius + 1:
            x.narrow(dim, radius + 1, n - radius - 1).sub_(c.narrow(dim, 0, n - radius - 1))
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
    return (ordered << 32) | ((idx * 2654435761) & 0xFFFFFFFF)


def _ranked(ys: torch.Tensor, xs: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, ...]:
    order = torch.argsort(k, descending=True)
    return ys[order], xs[order], k[order]


class Cells:
    """An image's keys on a canvas with a margin of ``r`` keys NONE on every side (so that
    every window lies inside), row-major, cut in cells of side ``s = r + 1``."""

    def __init__(self, key: torch.Tensor, radius: int) -> None:
        (h, w), s, r, dev = key.shape, radius + 1, radius, key.device
        hp, wp = -(-(h + 2 * r) // s) * s, -(-(w + 2 * r) // s) * s
        self.r, self.s, self.hc, self.wc, self.size = r, s, hp // s, wp // s, (h, w)
        self.pad = (r, wp - w - r, r, hp - h - r)
        self.keys = F.pad(key, self.pad, value=NONE)
        step = torch.tensor(_NEIGHBOURS, device=dev)  # the 8 neighbours on the bordered grid
        self.near = step[:, 0] * (self.wc + 2) + step[:, 1]

    def masked(self, candidates: torch.Tensor) -> torch.Tensor:
        """(hp, wp) the keys of ``candidates`` (H,W) bool, NONE elsewhere."""
        return self.keys.masked_fill(~F.pad(candidates, self.pad), NONE)

    def windows(self, canvas: torch.Tensor) -> torch.Tensor:
        """(hp - 2r, wp - 2r, 2r+1, 2r+1) view of ``canvas``: ``[y - r, x - r]`` is the window
        around canvas pixel (y, x), so a batch of windows is read or written at once."""
        size = 2 * self.r + 1
        return canvas.unfold(0, size, 1).unfold(1, size, 1)

    def blank(self, canvas: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor) -> None:
        """Set the windows around canvas pixels (ys, xs) to NONE, in place (overlapping
        windows write the same NONE)."""
        self.windows(canvas)[ys - self.r, xs - self.r] = NONE

    def drop(self, canvas: torch.Tensor, mask: torch.Tensor) -> None:
        """Set the keys of the ``mask`` (H,W) bool pixels of ``canvas`` to NONE, in place."""
        (h, w), r = self.size, self.r
        canvas[r : r + h, r : r + w].masked_fill_(mask, NONE)

    def stale(self, canvas: torch.Tensor, arg: torch.Tensor, alive: torch.Tensor):
        """The ``alive`` cells whose best (``arg``, :meth:`bests`) is NONE on ``canvas`` now:
        the only cells whose best a blanking changed."""
        s, a = self.s, arg[alive]
        ys, xs = (alive // self.wc) * s + a // s, (alive % self.wc) * s + a % s
        return alive[canvas.view(-1).take(ys * canvas.shape[1] + xs) == NONE]

    def bests(self, canvas: torch.Tensor, best: torch.Tensor, arg: torch.Tensor, alive):
        """``best, arg`` (cells,) of ``canvas`` updated in place: each cell's best key and its
        place in the cell (``s`` times its row plus its column); only the ``alive`` cells (a
        cell without a candidate keeps none) when they are few, every cell when ``alive`` is
        None or many."""
        s, grid = self.s, canvas.view(self.hc, self.s, self.wc, self.s)
        if alive is None or 2 * alive.numel() > best.numel():
            row_best, col = grid.max(3)  # (hc, s, wc): the best of each row of each cell
            cell_best, row = row_best.max(1)  # keys are unique: one best a cell
            best.copy_(cell_best.view(-1))
            arg.copy_((row * s + col.gather(1, row[:, None]).squeeze(1)).view(-1))
        else:
            b, a = grid[alive // self.wc, :, alive % self.wc].reshape(-1, s * s).max(1)
            best[alive], arg[alive] = b, a


def _peaks(cells: Cells, canvas: torch.Tensor, best: torch.Tensor, arg: torch.Tensor):
    """One pass over the cell bests ``best, arg`` (:meth:`Cells.bests`): ``((ys, xs, keys) of
    the peaks on the canvas, the best key left, the cells with a candidate)``, ``(None, NONE,
    ...)`` when no candidate is left. Peaks are cell bests with no higher candidate in their
    window."""
    s, r, dev = cells.s, cells.r, canvas.device
    cell = (best > NONE).nonzero()[:, 0]
    if cell.numel() == 0:
        return None, NONE, cell
    kp, a, cy, cx = best[cell], arg[cell], cell // cells.wc + 1, cell % cells.wc + 1
    top = int(kp.max())
    ys, xs = (cy - 1) * s + a // s, (cx - 1) * s + a % s
    grid = canvas.new_full((cells.hc + 2, cells.wc + 2), NONE)
    grid[1:-1, 1:-1] = best.view(cells.hc, cells.wc)
    where = torch.full((2, grid.numel()), -4 * s * grid.numel(), device=dev, dtype=torch.long)
    at = cy * grid.shape[1] + cx
    where[0, at], where[1, at] = ys, xs
    near = at[:, None] + cells.near
    higher = grid.view(-1).take(near) > kp[:, None]
    inside = ((where[0].take(near) - ys[:, None]).abs() <= r) & (
        (where[1].take(near) - xs[:, None]).abs() <= r
    )
    peak = ~(higher & inside).any(1)
    check = peak & (higher & ~inside).any(1)  # a higher best outside the window: read it all
    if bool(check.any()):
        window = cells.windows(canvas)[ys[check] - r, xs[check] - r]
        peak[check] = window.amax((1, 2)) == kp[check]
    return (ys[peak], xs[peak], kp[peak]), top, cell


Enough = Callable[[torch.Tensor, torch.Tensor], bool]


def sweep(
    key: torch.Tensor,
    candidates: torch.Tensor,
    radius: int,
    enough: Enough | None = None,
    cells: Cells | None = None,
    need: int = 1,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(ys, xs, keys)`` of every pick of the greedy loop over ``candidates`` (H,W) bool with
    ``radius`` blanking, ranked (until no candidate is left). With ``enough(ys, xs)`` (ranked
    picks -> bool) the sweep stops once the picks ranked above every candidate left satisfy
    it, and returns those; it is asked only once ``need`` picks are found (fewer never
    satisfy it). ``cells``: ``Cells(key, radius)``, kept between sweeps of an image; with it,
    ``candidates`` may be their canvas instead (int64, :meth:`Cells.masked`; not changed).
    One host sync per pass."""
    if radius <= 0:
        ys, xs = candidates.nonzero(as_tuple=True)
        return _ranked(ys, xs, key[ys, xs])
    cells = Cells(key, radius) if cells is None else cells
    if candidates.dtype == torch.int64:
        canvas = candidates.clone()
    else:
        canvas = cells.masked(candidates)
    cells_n = cells.hc * cells.wc
    best, arg, alive = canvas.new_empty(cells_n), canvas.new_empty(cells_n), None
    found, count = [(key.new_empty(0), key.new_empty(0), key.new_empty(0))], 0
    cells.bests(canvas, best, arg, None)
    while True:
        got, top, alive = _peaks(cells, canvas, best, arg)
        if got is None:
            break
        if enough is not None and count >= max(need, 1):
            ys, xs, k = _ranked(*(torch.cat(f) for f in zip(*found, strict=True)))
            sure = k > top
            if enough(ys[sure] - radius, xs[sure] - radius):
                return ys[sure] - radius, xs[sure] - radius, k[sure]
        cells.blank(canvas, got[0], got[1])
        cells.bests(canvas, best, arg, cells.stale(canvas, arg, alive))
        found.append(got)
        count += got[0].numel()
    ys, xs, k = _ranked(*(torch.cat(f) for f in zip(*found, strict=True)))
    return ys - radius, xs - radius, k


def _label_windows(shape: tuple[int, int], ys: torch.Tensor, xs: torch.Tensor, r: int):
    """(P, (2r+1)^2) flat indices of the windows around (ys, xs) on the image padded by ``r``
    on every side (see :func:`_padded`)."""
    d = torch.arange(-r, r + 1, device=ys.device)
    rows, cols = (ys[:, None] + r + d) * (shape[1] + 2 * r), xs[:, None] + r + d
    return (rows[:, :, None] + cols[:, None, :]).reshape(ys.numel(), (2 * r + 1) ** 2)


def _padded(mask: torch.Tensor, r: int) -> torch.Tensor:
    return F.pad(mask, (r, r, r, r)).reshape(-1)


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
    cells: Cells | None,
    cand: torch.Tensor,
    open_: torch.Tensor,
    left: int,
    block: int,
    label: int,
    caps: tuple[torch.Tensor, torch.Tensor] | None,
) -> torch.Tensor:
    """(H,W) bool pixels one sweep labels: its picks in rank order (dropping those over their
    class's room; ``caps``: each pixel's class (H,W) and each class's room, or None), each
    labeling the ``open_`` pixels of its ``label`` window, until ``left`` pixels; the pick that
    passes ``left`` labels its window's first pixels in raster order."""
    open_flat = _padded(open_, label)
    cls, room = caps if caps is not None else (None, None)

    def kept(ys: torch.Tensor, xs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        cost = open_flat[_label_windows(open_.shape, ys, xs, label)].sum(1)
        if cls is not None and room is not None:
            keep = _capped(cls[ys, xs], cost, room)
            ys, xs, cost = ys[keep], xs[keep], cost[keep]
        return ys, xs, cost

    enough = lambda y, x: int(kept(y, x)[2].sum()) >= left  # noqa: E731
    need = -(-left // (2 * label + 1) ** 2)  # fewer picks label fewer than ``left`` pixels
    ys, xs, _ = sweep(key, cand, block, enough, cells, need)
    ys, xs, cost = kept(ys, xs)
    full = cost.cumsum(0) <= left
    labeled = torch.zeros_like(open_flat)
    labeled[_label_windows(open_.shape, ys[full], xs[full], label).reshape(-1)] = True
    (h, w), r = open_.shape, label
    out = labeled.view(h + 2 * r, w + 2 * r)[r : r + h, r : r + w] & open_
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
        cells = Cells(key, block_radius) if block_radius > 0 else None
        cls = None if classes is None else classes[i].long()
        room = None
        if cls is not None and class_caps is not None:
            room = torch.full((int(cls.max()) + 1,), int(class_caps[i]), device=cls.device)
        cand, free, fresh = eligible[i] & unasked[i], None, False
        while (left := quota - int(taken.sum())) > 0:
            open_ = unasked[i] & ~taken
            if fresh or not bool(cand.any()):  # nothing eligible: the blanking is lifted
                if not bool(open_.any()):
                    break
                cand = open_ if cells is None else cells.masked(open_) if free is None else free
                free = None if cells is None else cand  # open pixels' canvas, kept up to date
            caps = None if cls is None or room is None else (cls, room)
            new = _one_sweep(key, cells, cand, open_, left, block_radius, label_radius, caps)
            taken |= new
            if free is not None:
                cells.drop(free, new)
            fresh, cls, room = True, None, None  # a fresh sweep, caps lifted
    return out
