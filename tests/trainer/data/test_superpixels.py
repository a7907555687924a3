"""Superpixels (issue 24): SLIC regions of a hand-made image, their ids and their cache."""

import numpy as np
import pytest
import torch

from trainer.data.superpixels import region_maps, superpixels


def _halves(h: int = 32, w: int = 64) -> np.ndarray:
    """Red left half, blue right half."""
    image = np.zeros((h, w, 3), dtype=np.uint8)
    image[:, : w // 2] = (220, 20, 20)
    image[:, w // 2 :] = (20, 20, 220)
    return image


def test_regions_never_straddle_a_colour_edge() -> None:
    regions = superpixels(_halves(), 16)
    assert regions.dtype == np.int32 and regions.shape == (32, 64)
    left, right = set(np.unique(regions[:, :32])), set(np.unique(regions[:, 32:]))
    assert left and right and not left & right
    ids = np.unique(regions)
    assert ids.tolist() == list(range(len(ids)))  # 0..R-1, every id used
    assert regions[0, 0] == 0  # numbered in raster order of first appearance
    assert len(ids) > 2  # the halves themselves are cut up


def test_region_count_follows_the_setting() -> None:
    yy, xx = np.mgrid[0:64, 0:128]
    image = np.stack([2 * xx, 4 * yy, xx + yy], -1).clip(0, 255).astype(np.uint8)  # smooth
    few, many = superpixels(image, 16), superpixels(image, 256)
    assert len(np.unique(few)) < len(np.unique(many)) <= 256


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        superpixels(np.zeros((4, 4), dtype=np.uint8), 4)
    with pytest.raises(ValueError, match="regions_per_image"):
        superpixels(_halves(), 0)


def test_region_maps_are_cached_by_pixels_and_setting(tmp_path) -> None:
    images = torch.from_numpy(np.stack([_halves(), _halves()[:, ::-1]])).permute(0, 3, 1, 2)
    maps = region_maps(images, 16, tmp_path)
    assert maps.shape == (2, 32, 64) and maps.dtype == torch.int32
    files = list(tmp_path.glob("superpixels-*.npy"))
    assert len(files) == 1
    np.save(files[0], np.zeros((2, 32, 64), dtype=np.int32))  # the cache is what is read
    assert int(region_maps(images, 16, tmp_path).max()) == 0
    assert torch.equal(region_maps(images, 16), maps)  # without a cache: computed again
    region_maps(images, 32, tmp_path)  # another setting: another file
    assert len(list(tmp_path.glob("superpixels-*.npy"))) == 2
