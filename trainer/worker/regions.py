"""Region queries on the wire (issue 24): a superpixel's mask as ``server.schemas.Region`` (a
box and the run lengths of the mask inside it, row-major, alternating outside / inside,
starting with an outside run), the one encoding the worker posts, and back to a mask.

The session's rounds (``trainer.worker.queue_keeper``) post a run's region queries with
``QueryIn.region`` built here, their ``y, x`` the region's first pixel (inside the region, as
``QueryIn`` requires).
"""

from __future__ import annotations

import torch

from server.schemas import Region


def encode_region(mask: torch.Tensor) -> Region:
    """``Region`` of an (H, W) bool mask (at least one pixel), in image coordinates."""
    ys, xs = mask.nonzero(as_tuple=True)
    if ys.numel() == 0:
        raise ValueError("a region holds at least one pixel; the mask is empty")
    top, left = int(ys.min()), int(xs.min())
    box = mask[top : int(ys.max()) + 1, left : int(xs.max()) + 1].reshape(-1).to(torch.int8)
    change = torch.nonzero(box[1:] != box[:-1]).view(-1) + 1
    bounds = [0, *change.tolist(), box.numel()]
    runs = [b - a for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    if bool(box[0]):  # the encoding starts with an outside run
        runs = [0, *runs]
    height, width = int(ys.max()) - top + 1, int(xs.max()) - left + 1
    return Region(top=top, left=left, height=height, width=width, runs=runs)


def decode_region(region: Region, height: int, width: int) -> torch.Tensor:
    """The (height, width) bool mask of ``region`` (the inverse of :func:`encode_region`)."""
    if region.top + region.height > height or region.left + region.width > width:
        raise ValueError(f"the region's box passes the {height} x {width} image")
    box = torch.zeros(region.height * region.width, dtype=torch.bool)
    for start, length in region.spans():
        box[start : start + length] = True
    mask = torch.zeros(height, width, dtype=torch.bool)
    rows = slice(region.top, region.top + region.height)
    mask[rows, region.left : region.left + region.width] = box.view(region.height, region.width)
    return mask


def first_pixel(region: Region) -> tuple[int, int]:
    """``(y, x)`` of the region's first inside pixel in row-major order (the query's pixel)."""
    start, _ = region.spans()[0]
    return region.top + start // region.width, region.left + start % region.width
