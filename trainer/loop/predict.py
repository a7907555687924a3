"""Apply a checkpoint: ``adamcu predict`` (label PNGs + colour overlays of a folder of images)
and ``adamcu evaluate`` (mIoU and per-class IoU of a labeled split).

Both stream: one image is read, segmented and written at a time, so memory stays bounded
whatever the folder's size. Each image runs at its own size unless the model was trained on
resized images (``crop`` in its config): then it is resized to that size and the prediction
brought back (bilinear logits). CPU or GPU (``device``), bf16 autocast on a GPU that has it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm import tqdm

from trainer.constants import IGNORE_INDEX
from trainer.data.safety import UnsafeFolderError
from trainer.data.validate import (
    DatasetError,
    check_label_values,
    list_images,
    read_classes,
    scan_split,
)
from trainer.learning.metrics import ConfusionMatrix
from trainer.loop import checkpoint
from trainer.loop.train import pick_device

MARKER = "predict.json"  # what predict writes last; a folder holding it is predict's own


class Predictor:
    """A checkpoint's network, ready to label one RGB image at a time."""

    def __init__(self, path: Path, device: str = "auto", amp: bool = True) -> None:
        self.ckpt = checkpoint.load(Path(path))
        self.device = pick_device(device)
        self.model = checkpoint.build(self.ckpt, self.device)
        norm = self.ckpt.normalization
        self.scale = float(norm.get("scale", 255.0))
        self.mean = torch.tensor(norm["mean"], device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(norm["std"], device=self.device).view(1, 3, 1, 1)
        crop = self.ckpt.config.crop
        self.size = (int(crop[0]), int(crop[1])) if crop else None
        cuda_bf16 = self.device.type == "cuda" and torch.cuda.is_bf16_supported()
        self.amp = amp and cuda_bf16
        self.colors = np.array([c.color for c in self.ckpt.classes], np.uint8)

    @torch.inference_mode()
    def labels(self, rgb: np.ndarray) -> np.ndarray:
        """(H, W) uint8 class ids for an (H, W, 3) uint8 image."""
        h, w = rgb.shape[:2]
        x = torch.from_numpy(rgb).to(self.device).permute(2, 0, 1)[None].float()
        x = (x / self.scale - self.mean) / self.std
        if self.size is not None and (h, w) != self.size:
            x = F.interpolate(x, size=self.size, mode="bilinear", align_corners=False)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
            logits = self.model(x).main
        logits = F.interpolate(logits.float(), size=(h, w), mode="bilinear", align_corners=False)
        return logits[0].argmax(0).to(torch.uint8).cpu().numpy()

    def overlay(self, rgb: np.ndarray, labels: np.ndarray, alpha: float = 0.5) -> np.ndarray:
        """The image with each pixel's class colour blended in (ignored pixels kept)."""
        keep = labels == IGNORE_INDEX
        colour = self.colors[np.where(keep, 0, labels)].astype(np.float32)
        out = (1 - alpha) * rgb.astype(np.float32) + alpha * colour
        out[keep] = rgb[keep]
        return out.round().astype(np.uint8)


def read_rgb(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as im:
            return np.array(im.convert("RGB"))
    except (OSError, ValueError) as exc:
        raise DatasetError(path.parent, [f"{path}: unreadable image ({exc})"]) from None


def check_output(out: Path, images: Path) -> None:
    """predict writes only into a new or empty folder, or one of its own earlier outputs."""
    if out.resolve() == images.resolve() or images.resolve() in out.resolve().parents:
        raise UnsafeFolderError(f"--out {out} is inside --images {images}: choose another folder")
    if out.is_file() or (out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file()):
        raise UnsafeFolderError(
            f"{out} exists and is not an earlier `adamcu predict` output (no {MARKER}): "
            "refusing to write into it; pass --out a new or empty folder"
        )


def predict_folder(
    ckpt: Path,
    images: Path,
    out: Path,
    *,
    device: str = "auto",
    amp: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    """Write ``out/labels/<key>.png`` (class ids) and ``out/overlays/<key>.png`` for every
    image of ``images``; returns (and writes to ``out/predict.json``) a summary."""
    images, out = Path(images), Path(out)
    if not images.is_dir():
        raise FileNotFoundError(f"--images {images} is not a folder")
    problems: list[str] = []
    files = list_images(images, problems)
    if problems or not files:
        raise DatasetError(images, problems or [f"{images}: no images"])
    check_output(out, images)
    predictor = Predictor(ckpt, device, amp)
    (out / "labels").mkdir(parents=True, exist_ok=True)
    (out / "overlays").mkdir(exist_ok=True)
    started = time.perf_counter()
    for path in tqdm(files, desc="predict", unit="img", disable=not progress):
        rgb = read_rgb(path)
        labels = predictor.labels(rgb)
        Image.fromarray(labels, "L").save(out / "labels" / f"{path.stem}.png")
        Image.fromarray(predictor.overlay(rgb, labels), "RGB").save(
            out / "overlays" / f"{path.stem}.png", compress_level=1
        )
    seconds = time.perf_counter() - started
    summary = {"checkpoint": str(ckpt), "images": len(files), "seconds": seconds}
    summary |= {"images_per_s": len(files) / max(seconds, 1e-9), "device": str(predictor.device)}
    summary["classes"] = [c.name for c in predictor.ckpt.classes]
    (out / MARKER).write_text(json.dumps(summary, indent=1))
    return summary


def _same_classes(predictor: Predictor, root: Path) -> None:
    data = [c.name for c in read_classes(root)]
    model = [c.name for c in predictor.ckpt.classes]
    if data != model:
        raise ValueError(f"the checkpoint's classes {model} differ from {root}'s {data}")


def evaluate_folder(
    ckpt: Path,
    root: Path,
    split: str,
    *,
    device: str = "auto",
    amp: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    """mIoU and per-class IoU (%) of the checkpoint on ``root/<split>`` (labels required)."""
    root = Path(root)
    predictor = Predictor(ckpt, device, amp)
    _same_classes(predictor, root)
    files = scan_split(root, split, labeled=True)
    cm = ConfusionMatrix(predictor.ckpt.num_classes)
    for image, label_path in tqdm(
        list(zip(files.images, files.labels or [], strict=True)),
        desc=f"evaluate {split}",
        unit="img",
        disable=not progress,
    ):
        label = read_label(label_path)
        check_label_values(label_path, label, predictor.ckpt.num_classes)
        pred = predictor.labels(read_rgb(image))
        cm.update(torch.from_numpy(pred).long()[None], torch.from_numpy(label).long()[None])
    per_class = [
        {"id": c.id, "name": c.name, "iou": v}
        for c, v in zip(predictor.ckpt.classes, cm.per_class_iou(), strict=True)
    ]
    return {
        "checkpoint": str(ckpt),
        "data": str(root),
        "split": split,
        "images": len(files.images),
        "miou": cm.miou(),
        "pixel_accuracy": cm.pixel_accuracy(),
        "per_class": per_class,
    }


def read_label(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as im:
            return np.array(im)
    except (OSError, ValueError) as exc:
        raise DatasetError(path.parent, [f"{path}: unreadable label ({exc})"]) from None


def format_table(result: dict[str, Any]) -> str:
    """The per-class table evaluate prints."""
    lines = [f"{'class':<20} IoU (%)", "-" * 28]
    for c in result["per_class"]:
        lines.append(f"{c['name']:<20} {'-' if c['iou'] is None else format(c['iou'], '.1f')}")
    lines.append(f"{'mIoU':<20} {result['miou']:.1f}  ({result['images']} images)")
    return "\n".join(lines)
