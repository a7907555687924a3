"""Superpixels of the target images: the regions a region query asks about (issue 24).

A region query names one superpixel and asks its dominant class in one click. The regions are
scikit-image's SLIC (Achanta et al., TPAMI 2012) on the RGB image, computed once per target
image and cached with the project's other generated data (the bench's ``cache`` folder, never
the user's data folder).

One setting sizes them, ``regions_per_image`` (``TrainConfig.regions_per_image``): about that
many regions an image at every resolution, so a region covers the same share of the frame at
64x128 and at 1024x2048 (256 regions: ~32 pixels a region at 64x128, ~8,192 (about 90x90) at
1024x2048). SLIC returns fewer where it merges fragments too small to stand alone; the
constants below keep the count near the setting at both sizes (measured on three bundled
target frames, 256 asked: 228-231 regions at 64x128, 243-251 at 1024x2048; with SLIC's
defaults, compactness 10 and no smoothing, 128-173 and 6-80: at 1024x2048 the frames' noise
broke the clusters into fragments that were merged into a few huge regions).

- ``COMPACTNESS = 30``: SLIC's weight of space against colour (its default is 10).
- smoothing: a Gaussian of sigma ``sqrt(min(H, W) / 64)`` before clustering, 1 pixel at
  64x128 and 4 at 1024x2048 (the frame's noise grows with the render size, in pixels).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

COMPACTNESS = 30.0
VERSION = 2  # of the regions' constants: part of the cache key


def smoothing(height: int, width: int) -> float:
    """SLIC's Gaussian sigma for a frame: ``sqrt(min(H, W) / 64)`` pixels."""
    return float(np.sqrt(min(height, width) / 64.0))


def superpixels(image: np.ndarray, regions_per_image: int) -> np.ndarray:
    """(H, W) int32 region ids ``0..R-1`` (every id used) of one (H, W, 3) uint8 RGB image.

    SLIC with ``n_segments = regions_per_image``, :data:`COMPACTNESS` and :func:`smoothing`,
    connected regions (``enforce_connectivity``), ids renumbered in raster order of first
    appearance so equal inputs give equal maps."""
    from skimage.segmentation import slic

    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"superpixels take an (H, W, 3) image, got shape {image.shape}")
    if regions_per_image < 1:
        raise ValueError(f"regions_per_image must be >= 1, got {regions_per_image}")
    labels = slic(
        image,
        n_segments=regions_per_image,
        compactness=COMPACTNESS,
        sigma=smoothing(image.shape[0], image.shape[1]),
        start_label=0,
        channel_axis=-1,
        enforce_connectivity=True,
    )
    flat = labels.reshape(-1)
    _, first, inverse = np.unique(flat, return_index=True, return_inverse=True)
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(first)] = np.arange(len(first))
    return rank[inverse].reshape(labels.shape).astype(np.int32)


def _key(images: torch.Tensor, regions_per_image: int) -> str:
    from skimage import __version__ as skimage_version

    digest = hashlib.sha256(images.contiguous().numpy().tobytes())
    key = f"{tuple(images.shape)}|{regions_per_image}|{skimage_version}|{VERSION}"
    digest.update(key.encode())
    return digest.hexdigest()[:16]


def region_maps(
    images: torch.Tensor, regions_per_image: int, cache_dir: Path | None = None
) -> torch.Tensor:
    """(N, H, W) int32 region maps of uint8 (N, 3, H, W) images, read from ``cache_dir`` when
    an earlier call computed them for the same pixels and setting (the key hashes both)."""
    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / f"superpixels-{_key(images, regions_per_image)}.npy"
        if path.is_file():
            return torch.from_numpy(np.load(path))
    rgb = images.permute(0, 2, 3, 1).contiguous().numpy()
    maps = np.stack([superpixels(im, regions_per_image) for im in rgb]) if len(rgb) else None
    out = maps if maps is not None else np.zeros((0, *images.shape[-2:]), dtype=np.int32)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, out)
        tmp.replace(path)
    return torch.from_numpy(out)
