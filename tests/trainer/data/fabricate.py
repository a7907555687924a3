"""Tiny dataset trees in each real benchmark's exact on-disk format, for tests.

Images are random RGB PNGs; labels are random ids of the format's own label space
(Cityscapes labelIds for Cityscapes / GTA5 / Synscapes, SYNTHIA class ids in the first channel
of a 16-bit RGB PNG), in blocks so that a downscaled label still has several classes.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from trainer.data.folder import write_mask_png

# labelIds that map to the 19 train ids, plus 0 (unlabeled -> 255)
CITYSCAPES_IDS = np.array(
    [0, 7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33], np.uint8
)
SYNTHIA_IDS = np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 15, 17, 19, 21], np.uint16)


def rgb(path: Path, h: int, w: int, value: int | None = None, seed: int = 0) -> None:
    """An RGB PNG (H, W): constant ``value`` or random pixels."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    arr = (
        np.full((h, w, 3), value, np.uint8)
        if value is not None
        else rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    )
    Image.fromarray(arr).save(path)


def png16_rgb(path: Path, arr: np.ndarray) -> None:
    """Write a 16-bit RGB PNG (H, W, 3) as SYNTHIA does (Pillow cannot write these)."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(tag + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", crc)

    h, w, _ = arr.shape
    raw = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in arr)
    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def blocks(ids: np.ndarray, h: int, w: int, seed: int, block: int = 8) -> np.ndarray:
    """(H, W) label map of random ``ids`` in block x block squares."""
    rng = np.random.default_rng(seed)
    coarse = rng.choice(ids, (-(-h // block), -(-w // block)))
    return coarse.repeat(block, 0).repeat(block, 1)[:h, :w]


def cityscapes(root: Path, counts: dict[str, int], h: int = 48, w: int = 96) -> Path:
    """leftImg8bit/<split>/<city>/..., gtFine/<split>/<city>/..._gtFine_labelIds.png."""
    for split, n in counts.items():
        for i in range(n):
            stem = f"city{i % 2}_000000_{i:06d}"
            city = f"city{i % 2}"
            rgb(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png", h, w, seed=i)
            write_mask_png(
                root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png",
                blocks(CITYSCAPES_IDS, h, w, seed=100 + i),
            )
    return root


def gta5(root: Path, n: int, h: int = 52, w: int = 96) -> Path:
    """images/<n>.png and labels/<n>.png (labelIds); the last label is half size, as a few
    GTA5 labels differ in size from their image."""
    for i in range(n):
        rgb(root / "images" / f"{i + 1:05d}.png", h, w, seed=10 + i)
        lh, lw = (h // 2, w // 2) if i == n - 1 else (h, w)
        write_mask_png(
            root / "labels" / f"{i + 1:05d}.png", blocks(CITYSCAPES_IDS, lh, lw, seed=200 + i)
        )
    return root


def synthia(root: Path, n: int, h: int = 38, w: int = 64) -> Path:
    """RGB/<n>.png and GT/LABELS/<n>.png (16-bit RGB, class id in the first channel)."""
    for i in range(n):
        rgb(root / "RGB" / f"{i:07d}.png", h, w, seed=20 + i)
        classes = blocks(SYNTHIA_IDS, h, w, seed=300 + i).astype(np.uint16)
        instance = np.full_like(classes, 300)
        png16_rgb(
            root / "GT" / "LABELS" / f"{i:07d}.png",
            np.stack([classes, instance, np.zeros_like(classes)], -1),
        )
    return root


def synscapes(root: Path, n: int, h: int = 36, w: int = 72) -> Path:
    """img/rgb/<n>.png and img/class/<n>.png (labelIds)."""
    for i in range(n):
        rgb(root / "img" / "rgb" / f"{i + 1}.png", h, w, seed=30 + i)
        write_mask_png(
            root / "img" / "class" / f"{i + 1}.png", blocks(CITYSCAPES_IDS, h, w, seed=400 + i)
        )
    return root
