"""Class centres of the c2c units (section III-C1 "Category Center Generation", Eq. 11).

A centre is the L2-normalised mean of the normalised embeddings of a class's ``center``
pixels (the G_l pixels among the drawn MCU pixels of
:func:`trainer.learning.pixel_sets.build_pixel_sets`).
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
) -> tuple[Tensor, ...]:
    """Class centres (emb, class, unit) of the MCU pixels ``(center, label, image)`` (P,) each
    (a :class:`~trainer.learning.contrast.PixelBatch`'s fields) of images in ``domains``, with
    normalised embeddings ``emb`` (P, D), in one cell per (image, class), the c2c unit of image
    ``i`` being ``images + i``; a cell without centre pixels is in unit ``2 * images`` (linked
    to nothing).

    ``scope`` (``TrainConfig.center_scope``): ``"image"`` (ours) averages each image's own
    pixels of the class; ``"domain"`` (the paper's "aggregation of those pixels in the low
    uncertainty group for each domain") averages the class's pixels of every image of the
    batch's domain, and every image of that domain carries the same centres (so the intra and
    the cross-image c2c contrast a domain's centres with themselves, the cross-domain c2c
    source centres with target ones).
    """
    center, label, pixel_image = pixels
    n_img = len(domains)
    ok = center & (label >= 0) & (label < num_classes)
    domain = host_to_device(torch.tensor(domains), emb.device)
    if scope == "domain":
        owner, owners = domain[pixel_image], 2
    else:
        owner, owners = pixel_image, n_img
    cells = owners * num_classes
    cell = torch.where(ok, owner * num_classes + label, cells)
    sums = emb.new_zeros(cells + 1, emb.shape[1]).index_add(0, cell, emb)[:cells]
    present = count_ids(cell, cells + 1)[:cells] > 0
    rows = torch.arange(n_img * num_classes, device=emb.device)
    image = torch.div(rows, num_classes, rounding_mode="floor")
    if scope == "domain":  # each image's cells read its domain's
        row = domain[image] * num_classes + rows % num_classes
        sums, present = sums[row], present[row]
    unit = torch.where(present, n_img + image, 2 * n_img)
    return F.normalize(sums, p=2.0, dim=-1, eps=1e-12), rows % num_classes, unit
