"""Ground-truth masks of the plain-folder dataset, looked up by the service's image ids.

Layout: ``root/<split>/labels/<id>.png`` (uint8 class ids, 255 = void) for the image key
``"<split>/<id>"``, e.g. ``target-train/000123`` -> ``root/target-train/labels/000123.png``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from oracle.simulated import dominant_class
from server.schemas import Region


def mask_path(root: Path, key: str) -> Path:
    split, sep, name = key.partition("/")
    if not sep or not name:
        raise ValueError(f"image key {key!r} is not '<split>/<id>'")
    return root / split / "labels" / f"{name}.png"


def load_mask(path: Path) -> np.ndarray:
    """(H, W) uint8 class ids; a palette PNG gives its indices."""
    with Image.open(path) as image:
        mask = np.asarray(image)
    if mask.ndim != 2:
        raise ValueError(f"{path}: expected a single-channel label PNG, got shape {mask.shape}")
    return mask


class GroundTruth:
    """Class ids at queried pixels; masks cached by image id (least recently used out).

    ``list_images`` returns ``{image_id: key}`` for the run; it is called again when an id is
    unknown (images registered after start).
    """

    def __init__(
        self, root: str | Path, list_images: Callable[[], dict[int, str]], cache_size: int = 256
    ) -> None:
        self.root, self.list_images, self.cache_size = Path(root), list_images, cache_size
        self._keys: dict[int, str] = {}
        self._masks: OrderedDict[int, np.ndarray] = OrderedDict()

    def key(self, image_id: int) -> str:
        if image_id not in self._keys:
            self._keys = self.list_images()
        if image_id not in self._keys:
            raise KeyError(f"image id {image_id} is not in the run")
        return self._keys[image_id]

    def mask(self, image_id: int) -> np.ndarray:
        if image_id in self._masks:
            self._masks.move_to_end(image_id)
            return self._masks[image_id]
        mask = load_mask(mask_path(self.root, self.key(image_id)))
        self._masks[image_id] = mask
        if len(self._masks) > self.cache_size:
            self._masks.popitem(last=False)
        return mask

    def values(self, queries: list[dict]) -> np.ndarray:
        """(K,) int64 GT class at each query's ``(image_id, y, x)``; for a region query
        (``region`` set) the dominant GT class over the region's pixels, void excluded
        (:func:`oracle.simulated.dominant_class`; 255 when every pixel is void)."""
        out = np.empty(len(queries), dtype=np.int64)
        for i, q in enumerate(queries):
            mask = self.mask(q["image_id"])
            y, x = q["y"], q["x"]
            if not (0 <= y < mask.shape[0] and 0 <= x < mask.shape[1]):
                raise ValueError(
                    f"pixel ({y}, {x}) is outside the {mask.shape} mask of image {q['image_id']}"
                )
            region = q.get("region")
            out[i] = mask[y, x] if region is None else dominant_class(region_values(mask, region))
        return out


def region_values(mask: np.ndarray, region: dict) -> np.ndarray:
    """The GT values of a region's pixels (``region``: ``server.schemas.Region`` as JSON)."""
    r = Region.model_validate(region)
    if r.top + r.height > mask.shape[0] or r.left + r.width > mask.shape[1]:
        raise ValueError(f"the region's box passes the {mask.shape} mask")
    inside = np.zeros(r.height * r.width, dtype=bool)
    for start, length in r.spans():
        inside[start : start + length] = True
    box = mask[r.top : r.top + r.height, r.left : r.left + r.width].reshape(-1)
    return box[inside]
