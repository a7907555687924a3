"""The paper's comparison rows that pick by image: per-image quotas, PixelPick and image-wise.

Pure functions on tensors (masks (N,H,W) bool in and out, randomness through a
``torch.Generator``), called by :mod:`trainer.selections`.

- **Per-image quotas** (:func:`image_quotas`): RIPU and PixelPick take a fixed number of pixels
  from every image of a round, not one quota for the batch. Here the remaining budget is spread
  evenly over the image visits left in the query window, so each visited image gets the same
  share and the run spends the same M_e as every other strategy.
- **PixelPick** (Shin et al., ICCV 2021, ``NoelShin/PixelPick`` ``query.py``): per image, the
  ``top_fraction`` (their ``top_n_percent``, default 5 %) most uncertain pixels by margin
  sampling (their default ``query_strategy``: ``1 - (p1 - p2)``), then the image's quota drawn
  uniformly among them. They count the top share over all pixels of the image, labeled ones
  pushed to the bottom; here it is counted over the image's pixels and drawn from the unasked
  ones among them (never fewer candidates than the quota).
- **Image-wise** (Table I's "Supervised image-wise"): every pixel of an image is asked, image
  after image, until the budget is spent. Images come in the loop's seeded random order, so
  the labeled images are a uniform random draw; the spending is paced over the query window
  like the other strategies (an image is taken whole while the run is behind ``M_e`` times
  the share of the window elapsed). The image that would overrun the budget gets a uniform
  random subset of its unasked pixels, so the run stops exactly at M_e.
"""

from __future__ import annotations

import math

import torch

from trainer.ops.draws import uniform_select


def image_quotas(remaining: int, iterations_left: int, images: int) -> torch.Tensor:
    """(images,) long pixels per batch image: ``ceil(remaining / (iterations_left * images))``
    each, the last ones cut so the batch takes at most ``remaining``; zeros when nothing is
    left."""
    remaining = max(0, int(remaining))
    if images <= 0:
        return torch.zeros(0, dtype=torch.long)
    each = math.ceil(remaining / (max(1, iterations_left) * images))
    take = torch.full((images,), each, dtype=torch.long)
    cum = torch.cumsum(take, 0)
    return (take - (cum - remaining).clamp(min=0)).clamp(min=0)


def margin_uncertainty(prob: torch.Tensor) -> torch.Tensor:
    """(N,H,W) ``1 - (p_1 - p_2)``, the top-two margin flipped so that higher is less sure.

    ``p_1, p_2`` are ``prob.topk(2, dim=1).values`` (a tie gives ``p_1 == p_2``), found one
    class at a time: a reduction over the class dim of a (N,C,H,W) tensor is slow on the CPU."""
    first, second = prob[:, 0].clone(), torch.full_like(prob[:, 0], -math.inf)
    for c in range(1, prob.shape[1]):
        p = prob[:, c]
        second = torch.where(p > first, first, torch.maximum(second, p))
        first = torch.maximum(first, p)
    return 1.0 - (first - second)


def pixelpick_select(
    uncertainty: torch.Tensor,
    unasked: torch.Tensor,
    quotas: torch.Tensor,
    top_fraction: float,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """PixelPick: per image, ``quotas[n]`` pixels uniformly among its top ``top_fraction``.

    Args:
        uncertainty: (N,H,W) float, higher = less sure (:func:`margin_uncertainty`).
        unasked: (N,H,W) bool, pixels that may be asked.
        quotas: (N,) long pixels per image.
        top_fraction: share of the image's pixels that are candidates, in (0, 1].

    Returns:
        (N,H,W) bool, a subset of ``unasked`` with ``min(quotas[n], unasked[n].sum())`` pixels
        in image ``n``; the candidates are the ``max(quota, ceil(top_fraction H W))`` most
        uncertain unasked pixels.
    """
    n, h, w = unasked.shape
    mask = torch.zeros_like(unasked)
    for i, q in enumerate(quotas.tolist()):
        if q <= 0:
            continue
        top = max(q, math.ceil(top_fraction * h * w))
        flat = uncertainty[i].reshape(-1).float().masked_fill(~unasked[i].reshape(-1), -math.inf)
        k = min(top, int(unasked[i].sum()))
        cand = torch.zeros_like(unasked[i]).reshape(-1)
        cand[torch.topk(flat, k).indices] = True
        mask[i] = uniform_select(cand.view(1, h, w), q, generator)[0]
    return mask


def image_wise_select(
    unasked: torch.Tensor,
    spent: int,
    expected: int,
    elapsed: float,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Whole images, in batch order, while the run is behind ``ceil(expected * elapsed)``.

    Args:
        unasked: (N,H,W) bool, the batch's unasked pixels.
        spent: pixels spent so far (all groups).
        expected: the budget M_e.
        elapsed: share of the query window done after this iteration, in (0, 1].

    Returns:
        (N,H,W) bool: every unasked pixel of the images taken; the image that would pass
        ``expected`` gets ``expected - spent`` of its unasked pixels, uniformly at random.
    """
    mask = torch.zeros_like(unasked)
    target = min(expected, math.ceil(expected * min(1.0, elapsed)))
    for i in range(unasked.shape[0]):
        if spent >= target:
            break
        cost = int(unasked[i].sum())
        if cost == 0:
            continue
        if spent + cost <= expected:
            mask[i] = unasked[i]
        else:
            mask[i] = uniform_select(unasked[i : i + 1], expected - spent, generator)[0]
        spent = min(expected, spent + cost)
    return mask
