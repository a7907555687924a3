"""Class centres of the c2c units (section III-C1 "Category Center Generation", Eq. 11).

A centre is the L2-normalised mean of the embeddings of a class's G_l pixels: the drawn MCU
pixels of :func:`trainer.learning.pixel_sets.build_pixel_sets` (each normalised), or every G_l
pixel of the image (:func:`every_pixel_sums`, the bilinearly read unit embedding map).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from trainer.ops.draws import count_ids, host_to_device


def center_units(
    pixels: tuple[Tensor, Tensor, Tensor],
    domains: list[int],
    emb: Tensor,
    num_classes: int,
    scope: str = "image",
    given: tuple[Tensor, Tensor] | None = None,
) -> tuple[Tensor, ...]:
    """Class centres (emb, class, unit) of the MCU pixels ``(center, label, image)`` (P,) each
    (a :class:`~trainer.learning.contrast.PixelBatch`'s fields) of images in ``domains``, with
    normalised embeddings ``emb`` (P, D), in one cell per (image, class), the c2c unit of image
    ``i`` being ``images + i``; a cell without centre pixels is in unit ``2 * images`` (linked
    to nothing). ``given``: the cells' sums and pixel counts (``(images * C, D)``, ``(images *
    C,)``) over every G_l pixel (:func:`every_pixel_sums`, ``center_pixels = "every"``), in
    place of the drawn ``center`` pixels.

    ``scope`` (``TrainConfig.center_scope``): ``"image"`` (ours) averages each image's own
    pixels of the class; ``"domain"`` (the paper's "aggregation of those pixels in the low
    uncertainty group for each domain") averages the class's pixels of every image of the
    batch's domain, and every image of that domain carries the same centres (so the intra and
    the cross-image c2c contrast a domain's centres with themselves, the cross-domain c2c
    source centres with target ones).
    """
    n_img = len(domains)
    cells = n_img * num_classes
    if given is None:
        center, label, pixel_image = pixels
        ok = center & (label >= 0) & (label < num_classes)
        cell = torch.where(ok, pixel_image * num_classes + label, cells)
        sums = emb.new_zeros(cells + 1, emb.shape[1]).index_add(0, cell, emb)[:cells]
        counts = count_ids(cell, cells + 1)[:cells]
    else:
        sums, counts = given
    rows = torch.arange(cells, device=emb.device)
    image = torch.div(rows, num_classes, rounding_mode="floor")
    if scope == "domain":  # each image's cells read its domain's
        domain = host_to_device(torch.tensor(domains), emb.device)
        row = domain[image] * num_classes + rows % num_classes
        sums = sums.new_zeros(2 * num_classes, sums.shape[1]).index_add(0, row, sums)[row]
        counts = counts.new_zeros(2 * num_classes).index_add(0, row, counts)[row]
    unit = torch.where(counts > 0, n_img + image, 2 * n_img)
    return F.normalize(sums, p=2.0, dim=-1, eps=1e-12), rows % num_classes, unit


def _taps(full: int, low: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """Bilinear taps of ``full`` pixel centres on ``low`` cells (align_corners=False, zero
    padding, as :func:`trainer.learning.pixel_sets.gather_batch_embeddings` reads them):
    (full, 2) cell indices (clamped) and weights (0 where the tap is outside)."""
    pos = (torch.arange(full, device=device, dtype=torch.float32) + 0.5) * low / full - 0.5
    first = pos.floor()
    frac = pos - first
    cells = torch.stack([first, first + 1], 1).long()
    weight = torch.stack([1 - frac, frac], 1)
    weight = torch.where((cells >= 0) & (cells < low), weight, 0.0)
    return cells.clamp(0, low - 1), weight


def every_pixel_sums(
    emb_map: Tensor, cls: Tensor, num_classes: int, size: tuple[int, int]
) -> tuple[Tensor, Tensor]:
    """Per (image, class): the sum over every full-resolution pixel of the class of the
    bilinearly read embedding map, and the pixel count; ``(N * C, D)`` and ``(N * C,)``,
    without gathering a pixel.

    ``emb_map`` (N, D, h, w); ``cls`` (N, H, W) long, each pixel's class in ``[0, C)`` or
    ``C`` for none. Bilinear reading is linear, so a class's sum is the map weighted by its
    pixels' taps: two scatters along x, a matmul along y and a contraction with the map.
    """
    n, d, h, w = emb_map.shape
    big_h, big_w = size
    device = emb_map.device
    xs, wx = _taps(big_w, w, device)  # (W, 2)
    ys, wy = _taps(big_h, h, device)  # (H, 2)
    slots = num_classes + 1  # the last: pixels of no class
    image = torch.arange(n, device=device).view(-1, 1, 1)
    row = ((image * slots + cls) * big_h + torch.arange(big_h, device=device).view(1, -1, 1)) * w
    along_x = emb_map.new_zeros(n * slots * big_h * w)
    for tap in range(2):
        taps = wx[:, tap].to(emb_map.dtype).expand(n, big_h, -1)
        along_x.index_add_(0, (row + xs[:, tap]).reshape(-1), taps.reshape(-1))
    a_y = emb_map.new_zeros(big_h, h).scatter_add_(1, ys, wy.to(emb_map.dtype))
    weights = torch.einsum("Hh,kHw->khw", a_y, along_x.view(n * slots, big_h, w))
    sums = torch.einsum("nchw,ndhw->ncd", weights.view(n, slots, h, w), emb_map)
    counts = count_ids((image * slots + cls).reshape(-1), n * slots).view(n, slots)
    return sums[:, :num_classes].reshape(-1, d), counts[:, :num_classes].reshape(-1)
