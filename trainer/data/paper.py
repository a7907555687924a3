"""The paper's real benchmarks in the loop: GTA5 / SYNTHIA / Synscapes -> Cityscapes.

``load_real_splits(cfg)`` reads the four splits the loop needs through ``trainer.data.real``
into the same in-memory ``SplitTensors`` as the bundled benchmark (uint8 images (N, 3, H, W),
uint8 labels (N, H, W) with 255 = ignore, ids), every image resized to ``cfg.crop`` = (H, W)
(bilinear; labels nearest). Which formats: ``cfg.source_dataset`` at ``cfg.source_root``
(defaults: ``cfg.dataset`` at ``cfg.data_root``) and ``cfg.dataset`` at ``cfg.data_root`` for
the target, val and test splits. Cityscapes' test labels are not public, so the paper (and
our configs) report on ``val``: ``val_split = test_split = "val"``.

At paper scale a split is large (GTA5 at 512x1024 is ~52 GB as uint8), so ``cfg.data_cache``
names a folder where each decoded split is written once as ``.npy`` and then memory-mapped:
a second run, and every torchrun process, shares those pages instead of decoding again.
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from cityscapesscripts.helpers.labels import labels as cs_labels

from trainer.config import TrainConfig
from trainer.constants import IGNORE_INDEX
from trainer.data.folder import SplitTensors, load_classes, resize
from trainer.data.real import SegmentationDataset, class_subset_lut, open_dataset

LAYOUTS = {
    "cityscapes": "leftImg8bit/{split}/<city>/*_leftImg8bit.png and "
    "gtFine/{split}/<city>/*_gtFine_labelIds.png (leftImg8bit_trainvaltest.zip and "
    "gtFine_trainvaltest.zip from cityscapes-dataset.com)",
    "gta5": "images/*.png and labels/*.png (the 'Playing for Data' GTA5 release)",
    "synthia": "RGB/*.png and GT/LABELS/*.png (SYNTHIA-RAND-CITYSCAPES)",
    "synscapes": "img/rgb/*.png and img/class/*.png (Synscapes)",
    "folder": "classes.json, {split}/images/*.png and {split}/labels/*.png",
}
CACHE_VERSION = 1


class RealSplits(NamedTuple):
    source: SplitTensors
    target: SplitTensors
    val: SplitTensors
    test: SplitTensors
    class_names: list[str]
    class_colors: list[tuple[int, int, int]]


def cityscapes_classes(num_classes: int) -> list[tuple[str, tuple[int, int, int]]]:
    """(name, colour) of the 19 / 16 / 13 Cityscapes classes, in class-index order."""
    lut = class_subset_lut(num_classes)
    by_train_id = {
        lb.trainId: (lb.name, tuple(lb.color)) for lb in cs_labels if 0 <= lb.trainId < IGNORE_INDEX
    }
    return [by_train_id[t] for t in sorted(by_train_id) if lut[t] != IGNORE_INDEX]


def open_split(kind: str, root: Path, split: str, num_classes: int) -> SegmentationDataset:
    """``open_dataset`` with an error that says which files were expected and where."""
    if kind not in LAYOUTS:
        raise ValueError(f"unknown dataset {kind!r}; choose one of {sorted(LAYOUTS)}")
    hint = f"expected {root}/" + LAYOUTS[kind].format(split=split).replace(" and ", f" and {root}/")
    if not root.is_dir():
        raise FileNotFoundError(
            f"dataset folder {root} does not exist: {hint}; download it "
            "there or point the config (data_root / source_root) at it"
        )
    try:
        return open_dataset(kind, root, split, num_classes=num_classes)
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"no {kind} '{split}' split in {root}: {hint} ({exc})") from exc


def _cache_key(
    kind: str,
    root: Path,
    split: str,
    num_classes: int,
    size: tuple[int, int] | None,
    translated: Path | None,
    n: int,
) -> str:
    parts = [
        CACHE_VERSION,
        kind,
        str(root.resolve()),
        split,
        num_classes,
        size,
        str(translated.resolve()) if translated else None,
        n,
    ]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]


def _decode(
    ds: SegmentationDataset, size: tuple[int, int] | None, images: np.ndarray, labels: np.ndarray
) -> None:
    """Decode every pair of ``ds`` into the preallocated arrays, a few threads at a time."""

    def one(i: int) -> None:
        image, label = ds.load(i)
        if size is not None:
            image, label = resize(image, label, size)
        if tuple(image.shape[-2:]) != images.shape[-2:]:
            raise ValueError(
                f"{ds.pairs[i][0]} is {tuple(image.shape[-2:])}, the first image "
                f"{images.shape[-2:]}: set crop = [H, W] to resize every image"
            )
        images[i], labels[i] = image.numpy(), label.numpy()

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        list(pool.map(one, range(len(ds))))


def _first_size(ds: SegmentationDataset, size: tuple[int, int] | None) -> tuple[int, int]:
    return size if size is not None else tuple(ds.load(0)[0].shape[-2:])


def load_real_split(
    kind: str,
    root: Path,
    split: str,
    *,
    num_classes: int,
    size: tuple[int, int] | None,
    translated_dir: Path | None = None,
    cache_dir: Path | None = None,
) -> SplitTensors:
    """One split of a real dataset in memory (or memory-mapped from ``cache_dir``).

    ``translated_dir`` holds pre-translated images (CycleGAN) named like the originals; they
    replace the split's images, labels still come from ``root``.
    """
    ds = open_split(kind, Path(root), split, num_classes)
    if translated_dir is not None:
        ds.pairs = [(Path(translated_dir) / img.name, lab, key) for img, lab, key in ds.pairs]
    ids = [f"{split}/{key}" for _, _, key in ds.pairs]
    h, w = _first_size(ds, size)
    shape = (len(ds), h, w)
    if cache_dir is None:
        images, labels = np.empty((len(ds), 3, h, w), np.uint8), np.empty(shape, np.uint8)
        _decode(ds, size, images, labels)
        return SplitTensors(torch.from_numpy(images), torch.from_numpy(labels), ids)
    key = _cache_key(kind, Path(root), split, num_classes, size, translated_dir, len(ds))
    stem = Path(cache_dir) / f"{kind}-{split}-{key}"
    done = stem.with_suffix(".ids.json")
    if not done.is_file():
        _write_cache(ds, size, stem, (len(ds), 3, h, w), ids)
    images = np.load(stem.with_suffix(".images.npy"), mmap_mode="c")
    labels = np.load(stem.with_suffix(".labels.npy"), mmap_mode="c")
    return SplitTensors(
        torch.from_numpy(images), torch.from_numpy(labels), json.loads(done.read_text())
    )


def _write_cache(
    ds: SegmentationDataset,
    size: tuple[int, int] | None,
    stem: Path,
    shape: tuple[int, int, int, int],
    ids: list[str],
) -> None:
    """Decode straight into .npy files (no second copy in memory), renamed when complete;
    the ids file is written last and marks the entry as usable."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    tmp = f".tmp{os.getpid()}"
    img_tmp, lab_tmp = Path(f"{stem}.images{tmp}.npy"), Path(f"{stem}.labels{tmp}.npy")
    images = np.lib.format.open_memmap(img_tmp, mode="w+", dtype=np.uint8, shape=shape)
    labels = np.lib.format.open_memmap(
        lab_tmp, mode="w+", dtype=np.uint8, shape=(shape[0], *shape[2:])
    )
    _decode(ds, size, images, labels)
    images.flush()
    labels.flush()
    del images, labels
    os.replace(img_tmp, stem.with_suffix(".images.npy"))
    os.replace(lab_tmp, stem.with_suffix(".labels.npy"))
    ids_tmp = Path(f"{stem}.ids{tmp}.json")
    ids_tmp.write_text(json.dumps(ids))
    os.replace(ids_tmp, stem.with_suffix(".ids.json"))


def load_real_splits(cfg: TrainConfig) -> RealSplits:
    """Source, target-train, val and test of ``cfg`` (see the module docstring)."""
    target_kind = cfg.dataset
    source_kind = cfg.source_dataset or target_kind
    target_root = Path(cfg.data_root)
    source_root = Path(cfg.source_root) if cfg.source_root else target_root
    num_classes = cfg.num_classes or 19
    cache = Path(cfg.data_cache) if cfg.data_cache else None
    translated = Path(cfg.translated_dir) if cfg.translated_dir else None

    def load(kind: str, root: Path, split: str, trans: Path | None = None) -> SplitTensors:
        return load_real_split(
            kind,
            root,
            split,
            num_classes=num_classes,
            size=cfg.crop,
            translated_dir=trans,
            cache_dir=cache,
        )

    source = load(source_kind, source_root, cfg.source_split, translated)
    target = load(target_kind, target_root, cfg.target_split)
    val = load(target_kind, target_root, cfg.val_split)
    test = (
        val if cfg.test_split == cfg.val_split else load(target_kind, target_root, cfg.test_split)
    )
    if target_kind == "folder":
        classes = [(c.name, tuple(c.color)) for c in load_classes(target_root)]
    else:
        classes = cityscapes_classes(num_classes)
    return RealSplits(source, target, val, test, [n for n, _ in classes], [c for _, c in classes])
