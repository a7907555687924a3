"""Readers for the real benchmarks' on-disk formats, and split evaluation.

Formats (``kind`` of ``open_dataset``):

- ``cityscapes``: leftImg8bit/<split>/<city>/<stem>_leftImg8bit.png and
  gtFine/<split>/<city>/<stem>_gtFine_labelIds.png (Cityscapes labelIds).
- ``gta5``: images/<n>.png, labels/<n>.png (labelIds; a few labels differ in size from
  their image and are resized to it with NEAREST).
- ``synthia``: SYNTHIA-RAND-CITYSCAPES RGB/<n>.png, GT/LABELS/<n>.png (16-bit PNG, class id
  in the first channel, see ``read_synthia_label``).
- ``synscapes``: img/rgb/<n>.png, img/class/<n>.png (Cityscapes labelIds).
- ``folder``: the plain folder format of ``trainer.data.folder`` (labels are already class ids).

Label ids map to the 19 Cityscapes train ids with the official table of
``cityscapesscripts.helpers.labels``; 255 = ignore. ``num_classes`` 16 / 13 select the
SYNTHIA protocols (16 classes; 13 = without wall, fence, pole) as compact indices.
GTA5 / SYNTHIA / Synscapes have no official splits here: ``split="all"`` (or "train")
takes every image, any other split reads the stems listed in ``root/<split>.txt``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from cityscapesscripts.helpers.labels import labels as cs_labels
from cityscapesscripts.helpers.labels import name2label
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from trainer.constants import IGNORE_INDEX
from trainer.data.folder import (
    hflip,
    random_scale_crop,
    read_image_png,
    read_mask_png,
    resize,
    to_float,
)

Pair = tuple[Path, Path, str]
# SYNTHIA-RAND-CITYSCAPES class ids -> Cityscapes label names (the 16 protocol classes).
SYNTHIA_NAMES: dict[int, str] = {
    1: "sky",
    2: "building",
    3: "road",
    4: "sidewalk",
    5: "fence",
    6: "vegetation",
    7: "pole",
    8: "car",
    9: "traffic sign",
    10: "person",
    11: "bicycle",
    12: "motorcycle",
    15: "traffic light",
    17: "rider",
    19: "bus",
    21: "wall",
}
_NOT_IN_16 = ("terrain", "truck", "train")
_NOT_IN_13 = _NOT_IN_16 + ("wall", "fence", "pole")


def labelid_to_trainid_lut() -> np.ndarray:
    """uint8 (256,) LUT: Cityscapes labelId -> train id in [0, 19), else 255."""
    lut = np.full(256, IGNORE_INDEX, np.uint8)
    for label in cs_labels:
        if 0 <= label.id < 256 and 0 <= label.trainId < IGNORE_INDEX:
            lut[label.id] = label.trainId
    return lut


def synthia_to_trainid_lut() -> np.ndarray:
    """uint8 (256,) LUT: SYNTHIA class id -> Cityscapes train id (16 classes), else 255."""
    lut = np.full(256, IGNORE_INDEX, np.uint8)
    for sid, name in SYNTHIA_NAMES.items():
        lut[sid] = name2label[name].trainId
    return lut


def class_subset_lut(num_classes: int) -> np.ndarray:
    """uint8 (256,) LUT from 19-class train ids to ``num_classes`` (19, 16 or 13) indices."""
    drop = {19: (), 16: _NOT_IN_16, 13: _NOT_IN_13}.get(num_classes)
    if drop is None:
        raise ValueError(f"num_classes must be 19, 16 or 13, got {num_classes}")
    kept = sorted(
        lb.trainId for lb in cs_labels if 0 <= lb.trainId < IGNORE_INDEX and lb.name not in drop
    )
    lut = np.full(256, IGNORE_INDEX, np.uint8)
    lut[kept] = np.arange(len(kept), dtype=np.uint8)
    return lut


def read_synthia_label(path: Path) -> np.ndarray:
    """SYNTHIA class ids (H, W) int64 from GT/LABELS: a 16-bit PNG, class in channel 0.

    The reference code reads ``cv2.imread(p, IMREAD_UNCHANGED)[:, :, 2]`` (BGR), i.e. the
    first channel in RGB order. Pillow decodes 48-bit RGB PNGs to 8 bits by keeping the
    high byte only, so we decode the file twice, once keeping the high and once the low
    byte of each big-endian sample (rawmodes RGB;16B / RGB;16L), and combine them.
    Single-channel 16-bit (I;16) and 8-bit PNGs are read as they are.
    """
    with Image.open(path) as im:
        if im.mode in ("L", "P", "I", "I;16", "I;16B"):
            arr = np.asarray(im).astype(np.int64)
            return arr if arr.ndim == 2 else arr[..., 0]
        tile = im.tile[0] if im.tile else None
        if tile is None or tile.args not in ("RGB;16B", "RGBA;16B"):
            return np.asarray(im.convert("RGB"))[..., 0].astype(np.int64)
        high = np.asarray(im)[..., 0].astype(np.int64)
    with Image.open(path) as im:
        im.tile = [im.tile[0]._replace(args=tile.args.replace("16B", "16L"))]
        low = np.asarray(im)[..., 0].astype(np.int64)
    return high * 256 + low


def _listed(root: Path, split: str, stems: list[str]) -> list[str]:
    """All stems for split "all"/"train", else those named in ``root/<split>.txt``."""
    listing = root / f"{split}.txt"
    if listing.is_file():
        wanted = {Path(s.strip()).stem for s in listing.read_text().split() if s.strip()}
        return [s for s in stems if s in wanted]
    if split in ("all", "train"):
        return stems
    raise FileNotFoundError(f"no split list {listing}; use split='all'")


def _flat_pairs(root: Path, split: str, image_dir: str, label_dir: str) -> list[Pair]:
    """Pairs of same-named PNGs in two flat folders below ``root``."""
    stems = sorted(p.stem for p in (root / label_dir).glob("*.png"))
    return [
        (root / image_dir / f"{s}.png", root / label_dir / f"{s}.png", s)
        for s in _listed(root, split, stems)
    ]


def cityscapes_pairs(root: Path, split: str) -> list[Pair]:
    """(image, labelIds, key) for every image of a Cityscapes split; key = the stem."""
    pairs = []
    for img in sorted((root / "leftImg8bit" / split).glob("*/*_leftImg8bit.png")):
        stem = img.name[: -len("_leftImg8bit.png")]
        lab = root / "gtFine" / split / img.parent.name / f"{stem}_gtFine_labelIds.png"
        pairs.append((img, lab, stem))
    return pairs


@dataclass(frozen=True)
class Transform:
    """What a dataset does to each image: ``size`` = (h, w) resizes, ``crop`` = (h, w) does a
    random scale (``scale``) + crop, ``flip`` a random horizontal flip; ``keep_label_size``
    leaves the label at full resolution (for evaluation)."""

    size: tuple[int, int] | None = None
    crop: tuple[int, int] | None = None
    scale: tuple[float, float] = (0.5, 2.0)
    flip: bool = False
    keep_label_size: bool = False


class SegmentationDataset(Dataset):
    """Image/label files -> (image float (3, H, W) normalised, label long (H, W), key).

    ``read_label`` returns raw ids (H, W); ``lut`` (256,) maps them to class indices
    (ids above 255 become 255 = ignore); ``transform``: resize, crop, flip (none by default).
    """

    def __init__(
        self,
        pairs: list[Pair],
        read_label: Callable[[Path], np.ndarray],
        lut: np.ndarray,
        transform: Transform = Transform(),
    ) -> None:
        if not pairs:
            raise FileNotFoundError("no images found for this dataset / split")
        self.pairs, self.read_label, self.lut = pairs, read_label, lut
        t = transform
        self.size, self.crop, self.scale = t.size, t.crop, t.scale
        self.flip, self.keep_label_size = t.flip, t.keep_label_size

    def __len__(self) -> int:
        return len(self.pairs)

    def load(self, index: int) -> tuple[Tensor, Tensor]:
        """uint8 image (3, H, W) and uint8 class label (H, W), label resized to the image."""
        img_path, lab_path, _ = self.pairs[index]
        image = read_image_png(img_path)
        raw = self.read_label(lab_path)
        label = self.lut[np.clip(raw, 0, 255)]
        label[raw > 255] = IGNORE_INDEX
        if label.shape != image.shape[:2]:  # e.g. some GTA5 labels
            label = np.array(Image.fromarray(label).resize(image.shape[1::-1], Image.NEAREST))
        label_t = torch.from_numpy(np.ascontiguousarray(label))
        return torch.from_numpy(image).permute(2, 0, 1), label_t

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor, str]:
        image, label = self.load(index)
        if self.size is not None:
            resized, lab_small = resize(image, label, self.size)
            image, label = resized, (label if self.keep_label_size else lab_small)
        gen = torch.Generator().manual_seed(int(torch.randint(2**62, ())))
        if self.crop is not None:
            image, label = random_scale_crop(image, label, gen, self.crop, self.scale)
        if self.flip:
            image, label = hflip(image, label, gen)
        return to_float(image), label.long(), self.pairs[index][2]


def open_dataset(
    kind: str,
    root: Path,
    split: str,
    *,
    num_classes: int = 19,
    transform: Transform = Transform(),
) -> SegmentationDataset:
    """Open ``kind`` ("cityscapes", "gta5", "synthia", "synscapes", "folder") at ``root``.

    ``num_classes`` (19, 16, 13) picks the Cityscapes class set; ignored for "folder".
    """
    root = Path(root)
    cs_lut = labelid_to_trainid_lut()
    match kind:
        case "cityscapes":
            pairs, read, lut = cityscapes_pairs(root, split), read_mask_png, cs_lut
        case "gta5":
            pairs, read, lut = _flat_pairs(root, split, "images", "labels"), read_mask_png, cs_lut
        case "synscapes":
            pairs = _flat_pairs(root, split, "img/rgb", "img/class")
            read, lut = read_mask_png, cs_lut
        case "synthia":
            pairs = _flat_pairs(root, split, "RGB", "GT/LABELS")
            read, lut = read_synthia_label, synthia_to_trainid_lut()
        case "folder":
            pairs = [
                (root / split / "images" / p.name, p, f"{split}/{p.stem}")
                for p in sorted((root / split / "labels").glob("*.png"))
            ]
            return SegmentationDataset(
                pairs, read_mask_png, np.arange(256, dtype=np.uint8), transform
            )
        case _:
            raise ValueError(f"unknown dataset kind {kind!r}")
    return SegmentationDataset(pairs, read, class_subset_lut(num_classes)[lut], transform)
