"""A user-made dataset folder (not the generator's): JPEG photos named like a camera's, label
PNGs, three classes (sky, road, car). Source images have flat colours, target images shifted
colours and noise, so there is a gap to adapt over and something a tiny model can learn."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = [
    {"id": 0, "name": "sky", "color": [70, 130, 180]},
    {"id": 1, "name": "road", "color": [128, 64, 128]},
    {"id": 2, "name": "car", "color": [0, 0, 142]},
]
COUNTS = {"source-train": 12, "target-train": 8, "target-val": 4, "target-test": 4}
_COLOURS = {
    "source": np.array([[90, 150, 230], [110, 110, 110], [200, 40, 40]], np.float32),
    "target": np.array([[160, 180, 200], [150, 140, 130], [120, 30, 60]], np.float32),
}


def scene(rng: np.random.Generator, h: int, w: int, domain: str) -> tuple[np.ndarray, np.ndarray]:
    """An (H, W, 3) uint8 photo and its (H, W) uint8 label map."""
    label = np.zeros((h, w), np.uint8)
    horizon = int(rng.integers(h // 3, 2 * h // 3))
    label[horizon:] = 1
    ch, cw = int(rng.integers(h // 6, h // 3)), int(rng.integers(w // 6, w // 3))
    y = min(h - ch, max(0, horizon - ch // 2))
    x = int(rng.integers(0, w - cw))
    label[y : y + ch, x : x + cw] = 2
    image = _COLOURS[domain][label] + rng.normal(0, 12 if domain == "target" else 3, (h, w, 3))
    label[y, x] = 255  # a void pixel
    return np.clip(image, 0, 255).astype(np.uint8), label


def make_user_folder(
    root: Path,
    counts: dict[str, int] | None = None,
    h: int = 32,
    w: int = 48,
    *,
    unlabeled: tuple[str, ...] = (),
    seed: int = 0,
) -> Path:
    """Write the folder: ``root/classes.json``, ``<split>/images/IMG_####.jpg``,
    ``<split>/labels/IMG_####.png`` (no labels/ for the splits in ``unlabeled``)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / "classes.json").write_text(json.dumps({"classes": CLASSES}, indent=1))
    rng = np.random.default_rng(seed)
    for split, n in (counts or COUNTS).items():
        domain = "source" if split.startswith("source") else "target"
        (root / split / "images").mkdir(parents=True)
        if split not in unlabeled:
            (root / split / "labels").mkdir()
        for i in range(n):
            image, label = scene(rng, h, w, domain)
            name = f"IMG_{1000 + i:04d}"
            Image.fromarray(image).save(root / split / "images" / f"{name}.jpg", quality=95)
            if split not in unlabeled:
                Image.fromarray(label, "L").save(root / split / "labels" / f"{name}.png")
    return root


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file's bytes, to check that a command changed nothing."""
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }
