"""The plain folder format, tensor conversion and joint image/label transforms.

Plain folder format (what ``trainer.data.synth`` writes and how users bring their own data)::

    root/classes.json                  {"classes": [{"id": 0, "name": "road", "color": [...]}]}
    root/<split>/images/<name>.<ext>   any image PIL reads, converted to RGB uint8
    root/<split>/labels/<name>.png     uint8 class ids, 255 = ignore (optional for unlabeled)

The rules are checked by ``trainer.data.validate`` (one validator for every entry point);
docs/data.md explains them.

Transforms are pure functions of (image, label, torch.Generator): images are (C, H, W)
or (N, C, H, W), labels (H, W) or (N, H, W) with ``ignore_index=255``; a batch shares
one random draw.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from trainer.constants import IGNORE_INDEX
from trainer.data.validate import (
    ClassInfo,
    DatasetError,
    check_label_values,
    read_classes,
    scan_split,
    working_size,
)

log = logging.getLogger("adamcu.data")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class SplitTensors:
    """A whole split in memory.

    images: uint8 (N, 3, H, W); labels: uint8 (N, H, W), 255 = ignore (an unlabeled split's
    are an expanded view of one 255: read it, never write it);
    ids: N keys like "target-train/000123".
    """

    images: Tensor
    labels: Tensor
    ids: list[str]


def load_classes(root: Path) -> list[ClassInfo]:
    """Read ``root/classes.json`` (checked by ``trainer.data.validate``), sorted by id."""
    return read_classes(root)


def read_image_png(path: Path) -> np.ndarray:
    """RGB uint8 (H, W, 3) from any image file (palette / grey / RGBA converted)."""
    with Image.open(path) as im:
        return np.array(im.convert("RGB"))


def read_mask_png(path: Path) -> np.ndarray:
    """uint8 (H, W) label map from a single-channel PNG ("L" or "P" mode)."""
    with Image.open(path) as im:
        if im.mode not in ("L", "P"):
            raise ValueError(f"{path}: expected a single-channel uint8 label PNG, got {im.mode}")
        return np.asarray(im)


def write_mask_png(path: Path, mask: np.ndarray | Tensor) -> None:
    """Write a uint8 (H, W) label map as a single-channel PNG (values kept exactly)."""
    arr = mask.cpu().numpy() if isinstance(mask, Tensor) else np.asarray(mask)
    if arr.ndim != 2 or arr.min(initial=0) < 0 or arr.max(initial=0) > 255:
        raise ValueError("mask must be (H, W) with values in [0, 255]")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr.astype(np.uint8), "L").save(path)


def _read(path: Path, size: tuple[int, int], label: bool) -> np.ndarray:
    """One image (RGB, bilinear) or label (nearest) at ``size`` = (H, W); DatasetError when
    the file cannot be decoded."""
    try:
        with Image.open(path) as im:
            im = im if label else im.convert("RGB")
            if (im.height, im.width) != size:
                mode = Image.Resampling.NEAREST if label else Image.Resampling.BILINEAR
                im = im.resize((size[1], size[0]), mode)
            return np.array(im)
    except (OSError, ValueError) as exc:
        raise DatasetError(path.parent, [f"{path}: unreadable ({exc})"]) from None


def load_split(
    root: Path,
    split: str,
    *,
    translated_dir: Path | None = None,
    size: tuple[int, int] | None = None,
    labeled: bool | None = True,
    num_classes: int | None = None,
) -> SplitTensors:
    """Load ``root/<split>`` of the plain folder format into memory (checked by
    ``trainer.data.validate.scan_split``; ``DatasetError`` names each bad file).

    ``size`` = (H, W): every image is resized to it (images bilinear, labels nearest); None:
    images must share one size. ``labeled=None``: a split without ``labels/`` loads with every
    pixel 255 (unlabeled). ``num_classes``: label values above it (other than 255) are refused.
    ``translated_dir`` holds pre-translated images (e.g. CycleGAN output) with the same file
    names; they replace the split's images (labels still come from ``root``).
    """
    files = scan_split(root, split, labeled=labeled)
    if size is None:
        size, _ = working_size({split: files}, None, split)
        if len(set(files.sizes)) > 1:
            raise DatasetError(root, [f"{split}: images differ in size; set crop = [H, W]"])
    n = len(files.images)
    if files.labels is None:  # every pixel 255: one byte behind a read-only view, not N*H*W
        labels = torch.full((1, 1, 1), IGNORE_INDEX, dtype=torch.uint8).expand(n, *size)
    else:
        labels = torch.empty((n, *size), dtype=torch.uint8)
    images = torch.empty((n, 3, *size), dtype=torch.uint8)
    for i, path in enumerate(files.images):
        if translated_dir is not None:
            path = _translated(Path(translated_dir), path)
        images[i] = torch.from_numpy(_read(path, size, label=False)).permute(2, 0, 1)
        if files.labels is not None:
            label = _read(files.labels[i], size, label=True)
            if num_classes is not None:
                check_label_values(files.labels[i], label, num_classes)
            labels[i] = torch.from_numpy(label)
    return SplitTensors(images, labels, files.ids)


def _translated(folder: Path, image: Path) -> Path:
    png = folder / f"{image.stem}.png"
    return png if png.is_file() else folder / image.name


def load_folder(
    root: Path,
    splits: list[str],
    *,
    crop: tuple[int, int] | None = None,
    translated: dict[str, Path] | None = None,
    unlabeled: tuple[str, ...] = (),
    first: str = "target-train",
) -> tuple[list[SplitTensors], list[ClassInfo]]:
    """Validate and load ``splits`` of a folder at one working size (``working_size``: ``crop``
    if set, else the images' common size, else the first ``first`` image's size). Splits in
    ``unlabeled`` may come without labels/ (every pixel 255 then); ``translated`` maps a split
    to a folder of its pre-translated images."""
    classes = read_classes(root)
    scanned = {s: scan_split(root, s, labeled=None if s in unlabeled else True) for s in splits}
    size, resized = working_size(scanned, crop, first)
    if resized:
        log.warning("%s: images of different sizes are resized to %dx%d (H x W)", root, *size)
    loaded = [
        load_split(
            root,
            s,
            translated_dir=(translated or {}).get(s),
            size=size,
            labeled=None if s in unlabeled else True,
            num_classes=len(classes),
        )
        for s in splits
    ]
    return loaded, classes


def _stats(x: Tensor) -> tuple[Tensor, Tensor]:
    """ImageNet mean and std shaped to broadcast over (..., 3, H, W)."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype, device=x.device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=x.dtype, device=x.device).view(3, 1, 1)
    return mean, std


def to_float(images: Tensor) -> Tensor:
    """uint8 (..., 3, H, W) -> float32 (..., 3, H, W), scaled to [0, 1], ImageNet-normalised."""
    x = images.float() / 255.0
    mean, std = _stats(x)
    return (x - mean) / std


def _as4d(image: Tensor, label: Tensor) -> tuple[Tensor, Tensor, bool]:
    """Batch a single (C, H, W) / (H, W) pair; returns (image4d, label3d, was_single)."""
    single = image.dim() == 3
    return (image[None], label[None], True) if single else (image, label, False)


def hflip(
    image: Tensor, label: Tensor, gen: torch.Generator, p: float = 0.5
) -> tuple[Tensor, Tensor]:
    """Flip image (..., C, H, W) and label (..., H, W) left-right with probability ``p``."""
    if torch.rand((), generator=gen).item() < p:
        return image.flip(-1), label.flip(-1)
    return image, label


def resize(image: Tensor, label: Tensor, size: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """Resize image bilinear and label nearest to ``size`` = (h, w).

    image: (C, H, W) or (N, C, H, W), uint8 or float (uint8 is rounded back);
    label: (H, W) or (N, H, W), any integer dtype, 255 = ignore.
    """
    img, lab, single = _as4d(image, label)
    out = F.interpolate(img.float(), size=size, mode="bilinear", align_corners=False)
    if image.dtype == torch.uint8:
        out = out.round().clamp(0, 255).to(torch.uint8)
    lab_out = F.interpolate(lab[:, None].float(), size=size, mode="nearest")[:, 0]
    lab_out = lab_out.to(label.dtype)
    return (out[0], lab_out[0]) if single else (out, lab_out)


def random_scale_crop(
    image: Tensor,
    label: Tensor,
    gen: torch.Generator,
    crop: tuple[int, int],
    scale: tuple[float, float] = (0.5, 2.0),
    fill: float = 0.0,
) -> tuple[Tensor, Tensor]:
    """Rescale by a random factor in ``scale``, then take a random ``crop`` = (h, w).

    Where the scaled image is smaller than the crop it is padded: image with ``fill``,
    label with ``ignore_index=255``. Shapes as in ``resize``; returns (.., crop_h, crop_w).
    """
    h, w = image.shape[-2:]
    s = scale[0] + (scale[1] - scale[0]) * torch.rand((), generator=gen).item()
    image, label = resize(image, label, (max(1, round(h * s)), max(1, round(w * s))))
    ch, cw = crop
    ph, pw = max(ch - image.shape[-2], 0), max(cw - image.shape[-1], 0)
    if ph or pw:
        image = F.pad(image, (0, pw, 0, ph), value=fill)
        label = F.pad(label, (0, pw, 0, ph), value=IGNORE_INDEX)
    y = int(torch.randint(image.shape[-2] - ch + 1, (), generator=gen))
    x = int(torch.randint(image.shape[-1] - cw + 1, (), generator=gen))
    return image[..., y : y + ch, x : x + cw], label[..., y : y + ch, x : x + cw]
