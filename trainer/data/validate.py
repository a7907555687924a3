"""The plain folder format's rules, checked in one place for every entry point.

``adamcu bench``, ``train``, ``evaluate``, ``validate``, the worker and ``adamcu loop`` read a
folder through :func:`scan_split` / :func:`read_classes` (``trainer.data.folder`` loads what they
accept), so a malformed folder always ends in one :class:`DatasetError` that names each file and
the rule it breaks, never in a traceback from numpy or PIL. The rules (docs/data.md)::

    root/classes.json              {"classes": [{"id": 0, "name": "road", "color": [r, g, b]}]}
                                   ids exactly 0..K-1 (K <= 255), names unique; color optional
    root/<split>/images/<key>.*    any image PIL reads (.png .jpg .jpeg .bmp .tif .tiff .webp);
                                   converted to RGB; keys (file stems) unique in a split
    root/<split>/labels/<key>.png  one PNG per image, same stem, same size, single channel
                                   ("L" or "P"), values = class ids or 255 (ignore)

A split without a ``labels/`` folder is *unlabeled*: allowed where the caller says so (the
target-train split of a session where people label), refused where labels are needed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from trainer.constants import IGNORE_INDEX

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
MAX_LISTED = 12  # problems listed in one error message
FORMAT_DOC = "docs/data.md"


class DatasetError(ValueError):
    """A folder breaks the format; the message lists each file and rule."""

    def __init__(self, where: Path | str, problems: list[str]) -> None:
        self.problems = problems
        shown = problems[:MAX_LISTED]
        more = len(problems) - len(shown)
        lines = [f"{where} is not a valid dataset folder (rules: {FORMAT_DOC}):"]
        lines += [f"  - {p}" for p in shown] + ([f"  ... and {more} more"] if more else [])
        super().__init__("\n".join(lines))


@dataclass(frozen=True)
class ClassInfo:
    """One class of a dataset: training id, name and display colour."""

    id: int
    name: str
    color: tuple[int, int, int]


def default_color(i: int) -> tuple[int, int, int]:
    """A stable, well-spread colour for a class without one."""
    return ((i * 97 + 37) % 256, (i * 53 + 151) % 256, (i * 191 + 71) % 256)


def _class_entry(i: int, c: object) -> tuple[ClassInfo | None, str | None]:
    if not isinstance(c, dict) or not isinstance(c.get("name"), str):
        return None, f"entry {i} needs a string 'name' and an integer 'id', got {c!r:.80}"
    cid, color = c.get("id"), c.get("color", default_color(i))
    if isinstance(cid, bool) or not isinstance(cid, int):
        return None, f"entry {i} ({c['name']!r}): 'id' must be an integer, got {cid!r:.40}"
    ok = isinstance(color, list | tuple) and len(color) == 3
    if not ok or not all(isinstance(v, int) and 0 <= v <= 255 for v in color):
        return None, f"class {cid} ({c['name']!r}): 'color' must be [r, g, b] in 0..255"
    return ClassInfo(cid, c["name"], tuple(int(v) for v in color)), None


def read_classes(root: Path) -> list[ClassInfo]:
    """``root/classes.json`` checked (schema above) and sorted by id."""
    path = Path(root) / "classes.json"
    if not path.is_file():
        raise DatasetError(root, [f"{path} is missing (the class table; see {FORMAT_DOC})"])
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(root, [f"{path}: not readable JSON ({exc})"]) from None
    entries = data.get("classes") if isinstance(data, dict) else None
    if not isinstance(entries, list) or not entries:
        raise DatasetError(root, [f'{path}: must be {{"classes": [{{"id": 0, "name": ...}}]}}'])
    parsed = [_class_entry(i, c) for i, c in enumerate(entries)]
    problems = [f"{path}: {err}" for _, err in parsed if err]
    classes = sorted((c for c, _ in parsed if c), key=lambda c: c.id)
    if not problems and [c.id for c in classes] != list(range(len(classes))):
        problems.append(f"{path}: ids must be exactly 0..{len(classes) - 1} (each once)")
    if not problems and len(classes) > IGNORE_INDEX:
        problems.append(f"{path}: at most {IGNORE_INDEX} classes (255 means ignore)")
    if not problems and len({c.name for c in classes}) != len(classes):
        problems.append(f"{path}: class names must be unique")
    if problems:
        raise DatasetError(root, problems)
    return classes


@dataclass(frozen=True)
class SplitFiles:
    """The files of one split: images sorted by key, their labels (None: unlabeled)."""

    split: str
    images: list[Path]
    labels: list[Path] | None
    sizes: list[tuple[int, int]]  # (H, W) per image

    @property
    def ids(self) -> list[str]:
        return [f"{self.split}/{p.stem}" for p in self.images]


def list_images(folder: Path, problems: list[str]) -> list[Path]:
    """Image files of ``folder`` sorted by stem; other files and duplicate stems are problems."""
    files = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    images, stems = [], {}
    for p in files:
        if not p.is_file() or p.suffix.lower() not in IMAGE_SUFFIXES:
            problems.append(f"{p}: not an image file (accepted: {' '.join(IMAGE_SUFFIXES)})")
        elif p.stem in stems:
            problems.append(f"{p}: same key as {stems[p.stem].name} (keys must be unique)")
        else:
            stems[p.stem] = p
            images.append(p)
    return sorted(images, key=lambda p: p.stem)


def image_size(path: Path, problems: list[str]) -> tuple[int, int] | None:
    """(H, W) from the file's header; None (and a problem) when PIL cannot read it."""
    try:
        with Image.open(path) as im:
            return im.height, im.width
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        problems.append(f"{path}: unreadable image ({type(exc).__name__}: {exc})")
        return None


def _label_problem(label: Path, image: Path, size: tuple[int, int]) -> str | None:
    if not label.is_file():
        return f"{image}: missing label {label} (every image of a labeled split needs one)"
    try:
        with Image.open(label) as im:
            fmt, mode, lsize = im.format, im.mode, (im.height, im.width)
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        return f"{label}: unreadable label ({type(exc).__name__}: {exc})"
    if fmt != "PNG":
        return f"{label}: labels must be PNG files (got {fmt}); lossy formats change class ids"
    if mode not in ("L", "P"):
        return f"{label}: labels must be single-channel 8-bit PNGs ('L' or 'P'), got {mode!r}"
    if lsize != size:
        return (
            f"{label}: size mismatch: label is {lsize[1]}x{lsize[0]} (W x H), image "
            f"{image.name} is {size[1]}x{size[0]}"
        )
    return None


def _check_labels(label_dir: Path, images: list[Path], sizes: list, problems: list[str]) -> None:
    stems = {p.stem for p in images}
    for p in sorted(label_dir.iterdir()):
        if p.name.startswith("."):
            continue
        if p.suffix.lower() != ".png":
            problems.append(f"{p}: labels must be .png files named like their image")
        elif p.stem not in stems:
            problems.append(f"{p}: label without an image (no {p.stem}.* in images/)")
    for image, size in zip(images, sizes, strict=True):
        if size is None:
            continue
        problem = _label_problem(label_dir / f"{image.stem}.png", image, size)
        if problem:
            problems.append(problem)


def scan_split(root: Path, split: str, *, labeled: bool | None = True) -> SplitFiles:
    """Check ``root/<split>`` (structure, readability, label names and sizes).

    labeled: True = labels required, None = optional (no labels/ folder: unlabeled),
    False = labels ignored. Label *values* are checked as they are decoded
    (:func:`check_label_values`). Raises :class:`DatasetError` listing every problem found.
    """
    base, problems = Path(root) / split, []
    image_dir, label_dir = base / "images", base / "labels"
    if not image_dir.is_dir():
        raise DatasetError(root, [f"{image_dir} is missing (split {split!r} needs images/)"])
    images = list_images(image_dir, problems)
    if not images and not problems:
        problems.append(f"{image_dir}: no images")
    sizes = [image_size(p, problems) for p in images]
    has_labels = label_dir.is_dir() and labeled is not False
    if labeled and not label_dir.is_dir():
        problems.append(f"{label_dir} is missing: split {split!r} needs labels (<key>.png)")
    elif has_labels:
        _check_labels(label_dir, images, sizes, problems)
    if problems:
        raise DatasetError(root, problems)
    labels = [label_dir / f"{p.stem}.png" for p in images] if has_labels else None
    return SplitFiles(split, images, labels, sizes)


def check_label_values(path: Path, label: np.ndarray, num_classes: int) -> None:
    """Refuse values that are neither a class id of classes.json nor 255 (ignore)."""
    values = np.unique(label)
    bad = values[(values >= num_classes) & (values != IGNORE_INDEX)]
    if bad.size:
        raise DatasetError(
            path.parent.parent.parent,
            [
                f"{path}: class ids {bad.tolist()[:8]} are not in classes.json "
                f"(ids 0..{num_classes - 1}; 255 = ignore)"
            ],
        )


def working_size(
    splits: dict[str, SplitFiles], crop: tuple[int, int] | None, first: str
) -> tuple[tuple[int, int], bool]:
    """The one (H, W) every image is brought to, and whether any image is resized.

    ``crop`` (the config field) wins; otherwise the common size of all images; otherwise,
    when sizes differ, the size of the first image of split ``first`` (target-train).
    """
    sizes = {s for f in splits.values() for s in f.sizes}
    if crop is not None:
        return (int(crop[0]), int(crop[1])), sizes != {tuple(crop)}
    if len(sizes) == 1:
        return next(iter(sizes)), False
    ref = splits.get(first) or next(iter(splits.values()))
    return ref.sizes[0], True


def validate_folder(root: Path, *, unlabeled: tuple[str, ...] = ()) -> dict[str, object]:
    """Check a whole folder: classes.json, every split (a sub-folder with images/), every
    label's values. Splits in ``unlabeled`` may lack labels/. Returns a summary; raises
    :class:`DatasetError` on the first split that breaks a rule."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(root, [f"{root} is not a folder"])
    classes = read_classes(root)
    names = sorted(p.name for p in root.iterdir() if (p / "images").is_dir())
    if not names:
        raise DatasetError(root, [f"{root}: no split folders (<split>/images/)"])
    summary: dict[str, object] = {"classes": [c.name for c in classes], "splits": {}}
    for name in names:
        files = scan_split(root, name, labeled=None if name in unlabeled else True)
        for path in files.labels or []:
            check_label_values(path, _decode(path), len(classes))
        summary["splits"][name] = {  # type: ignore[index]
            "images": len(files.images),
            "labeled": files.labels is not None,
            "sizes": sorted({f"{w}x{h}" for h, w in files.sizes}),
        }
    return summary


def _decode(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as im:
            return np.asarray(im)
    except (OSError, ValueError) as exc:
        raise DatasetError(path.parent, [f"{path}: unreadable ({exc})"]) from None


def fingerprint(root: Path) -> str:
    """A digest of every file's path, size and mtime under ``root``: a user's folder changes
    (files added, replaced, resized) change it, so caches keyed by it go stale correctly."""
    digest = hashlib.sha256()
    root = Path(root)
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        st = path.stat()
        digest.update(f"{path.relative_to(root)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]
