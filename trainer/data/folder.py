"""The plain folder format, tensor conversion and joint image/label transforms.

Plain folder format (what ``trainer.data.synth`` writes and how users bring their own data)::

    root/classes.json                  {"classes": [{"id": 0, "name": "road", "color": [...]}]}
    root/<split>/images/<name>.png     RGB uint8
    root/<split>/labels/<name>.png     uint8 class ids, 255 = ignore

Transforms are pure functions of (image, label, torch.Generator): images are (C, H, W)
or (N, C, H, W), labels (H, W) or (N, H, W) with ``ignore_index=255``; a batch shares
one random draw.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from trainer.constants import IGNORE_INDEX

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ClassInfo:
    """One class of a dataset: training id, name and display colour."""

    id: int
    name: str
    color: tuple[int, int, int]


@dataclass(frozen=True)
class SplitTensors:
    """A whole split in memory.

    images: uint8 (N, 3, H, W); labels: uint8 (N, H, W), 255 = ignore;
    ids: N keys like "target-train/000123".
    """

    images: Tensor
    labels: Tensor
    ids: list[str]


def load_classes(root: Path) -> list[ClassInfo]:
    """Read ``root/classes.json``, sorted by id."""
    data = json.loads((Path(root) / "classes.json").read_text())
    classes = [ClassInfo(int(c["id"]), str(c["name"]), tuple(c["color"])) for c in data["classes"]]
    return sorted(classes, key=lambda c: c.id)


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


def load_split(root: Path, split: str, *, translated_dir: Path | None = None) -> SplitTensors:
    """Load ``root/<split>`` of the plain folder format into memory.

    ``translated_dir`` holds pre-translated images (e.g. CycleGAN output) with the same
    file names; they replace the split's images (labels still come from ``root``).
    """
    label_dir = Path(root) / split / "labels"
    image_dir = Path(translated_dir) if translated_dir else Path(root) / split / "images"
    names = sorted(p.name for p in label_dir.glob("*.png"))
    if not names:
        raise FileNotFoundError(f"no label PNGs in {label_dir}")
    images = np.stack([read_image_png(image_dir / n) for n in names])
    labels = np.stack([read_mask_png(label_dir / n) for n in names])
    if images.shape[1:3] != labels.shape[1:]:
        raise ValueError(f"{split}: image size {images.shape[1:3]} != label {labels.shape[1:]}")
    ids = [f"{split}/{Path(n).stem}" for n in names]
    return SplitTensors(
        torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(labels), ids
    )


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
