"""RIPU as its authors select (Xie et al., CVPR 2022; BIT-DA/RIPU ``core/active/build.py``).

Both of their settings pick greedily, image by image: take the highest-scoring pixel, label
it (PA) or the ``(2K+1)^2`` region around it (RA), blank a window around it so that no later
pick lands there, repeat until the image's quota is spent; the blanked windows stay blanked in
later rounds. This module holds the two scores, the scaling rule of their window radius ``K``
and the selection; the greedy loop is :func:`trainer.selection.greedy.greedy_select` (also used by
``mcu-cap``).

- **PA** (pixels, ``RADIUS_K: 32`` at 1280x640): score = entropy x region impurity in a
  ``(2K+1)^2`` window; each pick labels one pixel and blanks the ``(2K+1)^2`` window around it.
- **RA** (regions, ``RADIUS_K: 1``): score = region impurity x the region's mean entropy, both
  over ``(2K+1)^2``; each pick labels the ``(2K+1)^2`` region (a 3x3 region costs 9 pixels of
  the budget) and blanks ``(4K+1)^2`` around its centre.

Persistent blanking needs no state of its own: a pixel is blanked in a later round exactly when
it lies within ``K`` of a pixel asked before (PA: within K of a pick; RA: within 2K of a
centre is within K of its region), so the blanked set is the dilation of the bank's ``asked``
by ``K`` (:func:`blocked_by_asked`). It survives a restart with the bank, and nothing blanked is
marked asked (asked pixels are the oracle's, counted by the service).

Where this differs from their code: they select in rounds over the whole target set in eval
mode at fixed iterations; here each batch image gets its share when it is visited in the query
window (the caller's quota), scored on the training forward. Their per-image count is fixed
per round; ours is the remaining budget over the image visits left, so the same M_e is spent.
When an image has no unblanked pixel left (their budgets are tiny: 40 pixels per image in PA)
the blanking of that image is lifted and the greedy goes on over its unasked pixels (a fresh
sweep), so every strategy spends the same budget. A region cut by the image border or by the
last pixels of a quota costs only its pixels (the last region is cut in raster order).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from trainer.selection.greedy import box_sum, dilate, greedy_select
from trainer.selection.uncertainty import entropy

# RIPU's target training size (INPUT.TARGET_INPUT_SIZE_TRAIN: 1280 x 640): K is defined there.
REFERENCE_PIXELS = 1280 * 640


def scaled_radius(radius_k: float, height: int, width: int) -> int:
    """Their ``K`` at our resolution: ``round(K * sqrt(H W / (1280 x 640)))``, at least 1.

    The square root of the area ratio keeps the window's share of the image (PA: 65x65 on
    1280x640 is 0.5 %) on any aspect ratio; 0 stays 0 (no window).
    """
    if radius_k <= 0:
        return 0
    return max(1, round(radius_k * math.sqrt(height * width / REFERENCE_PIXELS)))


def predicted(prob: torch.Tensor) -> torch.Tensor:
    """(N,H,W) long ``prob.argmax(1)`` (the first class of the highest probability), one class
    at a time: a reduction over the class dim of a (N,C,H,W) tensor is slow on the CPU."""
    best, pred = prob[:, 0].clone(), torch.zeros_like(prob[:, 0], dtype=torch.long)
    for c in range(1, prob.shape[1]):
        higher = prob[:, c] > best
        best = torch.where(higher, prob[:, c], best)
        pred.masked_fill_(higher, c)
    return pred


def impurity(pred: torch.Tensor, num_classes: int, kernel_size: int) -> torch.Tensor:
    """(N,H,W) RIPU's region impurity (Xie et al., CVPR 2022): the entropy of the predicted
    classes in the in-image part of the ``k x k`` window, over ``log(C)``; from window counts
    ``n_c`` as ``(log n - sum n_c log n_c / n) / log C``.

    The counts are box sums (:func:`trainer.selection.greedy.box_sum`) of several classes at
    once, each in its own bit field of an int64 (a count is at most ``k^2``): a sum of packed
    fields is the packed sums, and only the classes present in the batch are counted. A pure
    window is exactly 0. Everything after the box sums is per pixel and runs over blocks of
    rows, so that its temporaries stay in the cache (the same numbers as whole maps)."""
    if num_classes < 2:
        return torch.zeros(pred.shape, device=pred.device)
    r, bits, dev = kernel_size // 2, (kernel_size * kernel_size).bit_length(), pred.device
    per = 63 // bits
    present = torch.bincount(pred.reshape(-1), minlength=num_classes).nonzero()[:, 0].tolist()
    packed = []
    for start in range(0, len(present), per):
        group = present[start : start + per]
        one = torch.zeros(num_classes, dtype=torch.long, device=dev)  # class -> its bit field
        one[group] = 1 << (bits * torch.arange(len(group), device=dev))
        packed.append((box_sum(one[pred], r), len(group)))
    table = torch.arange(kernel_size * kernel_size + 1, device=dev).double()
    table = torch.xlogy(table, table).float()
    h, w = pred.shape[-2:]
    ey, ex = _extent(h, r, dev), _extent(w, r, dev)
    out = torch.empty(pred.shape, device=dev)
    for y in range(0, h, ROWS):
        rows = slice(y, y + ROWS)
        nlogn = torch.zeros(out[..., rows, :].shape, device=dev)
        for counts, fields in packed:  # one field at a time, in the order of the classes
            for j in range(fields):
                nlogn += table.take((counts[..., rows, :] >> (j * bits)) & ((1 << bits) - 1))
        out[..., rows, :] = _normalised(nlogn, (ey[rows, None] * ex[None, :]).double(), num_classes)
    return out


ROWS = 32  # rows of a block of the per-pixel steps (32 x 1024 pixels: 256 KiB of int64)


def _normalised(nlogn: torch.Tensor, n: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Impurity from ``sum n_c log n_c`` (float) and the window's pixels ``n`` (double)."""
    out = (n.log() - nlogn / n).float()
    # a pure window is 0 up to rounding; the least impure (one pixel apart) is far above it
    least = n.log() - (n - 1) / n * (n - 1).clamp_min(1).log()
    return torch.where(out < least.float() / 2, 0.0, out / math.log(num_classes))


def _extent(n: int, r: int, device: torch.device) -> torch.Tensor:
    """(n,) long: in-image pixels of ``[i - r, i + r]`` along an axis of ``n``."""
    i = torch.arange(n, device=device)
    return (i + r).clamp(max=n - 1) - (i - r).clamp(min=0) + 1


def pa_score(prob: torch.Tensor, radius: int) -> torch.Tensor:
    """PA score (N,H,W): pixel entropy x region impurity of the argmax in ``(2K+1)^2``.

    Their formula (natural-log entropy with +1e-6, unnormalised impurity) up to two positive
    constants, so the same ranking; at the border only in-image pixels count, as their zero
    padding with the count of in-image pixels does."""
    return impurity(predicted(prob), prob.shape[1], 2 * radius + 1) * entropy(prob)


def ra_score(prob: torch.Tensor, radius: int) -> torch.Tensor:
    """RA score (N,H,W): region impurity x mean pixel entropy, both over ``(2K+1)^2``."""
    size = 2 * radius + 1
    mean_ent = F.avg_pool2d(
        entropy(prob)[:, None], size, stride=1, padding=radius, count_include_pad=False
    )[:, 0]
    return impurity(predicted(prob), prob.shape[1], size) * mean_ent


def blocked_by_asked(unasked: torch.Tensor, radius: int) -> torch.Tensor:
    """Pixels blanked by earlier rounds: within ``radius`` of an asked pixel."""
    return dilate(~unasked, radius)


def ripu_select(
    prob: torch.Tensor,
    unasked: torch.Tensor,
    quotas: torch.Tensor,
    radius: int,
    regions: bool,
) -> torch.Tensor:
    """RIPU-PA (``regions=False``) or RIPU-RA on a batch: (N,H,W) bool pixels to label.

    ``radius`` is their ``K`` at our resolution (:func:`scaled_radius`); ``quotas`` (N,) the
    pixels per image. PA blanks K around each pick, RA labels K around each pick and blanks
    2K; both start from the blanking of earlier rounds (:func:`blocked_by_asked`)."""
    eligible = unasked & ~blocked_by_asked(unasked, radius)
    if regions:
        return greedy_select(ra_score(prob, radius), eligible, unasked, quotas, 2 * radius, radius)
    return greedy_select(pa_score(prob, radius), eligible, unasked, quotas, radius)
