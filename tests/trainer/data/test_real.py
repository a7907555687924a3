"""Tests for trainer/data/real.py on tiny fabricated trees in each exact on-disk format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as cs_eval
from cityscapesscripts.helpers.labels import trainId2label

from tests.trainer.data import fabricate
from trainer.data.folder import write_mask_png
from trainer.data.real import (
    Transform,
    class_subset_lut,
    labelid_to_trainid_lut,
    open_dataset,
    read_synthia_label,
    synthia_to_trainid_lut,
)
from trainer.learning.metrics import ConfusionMatrix


def _rgb(path: Path, h: int, w: int, value: int = 90) -> None:
    fabricate.rgb(path, h, w, value)


_png16_rgb = fabricate.png16_rgb


def test_cityscapes_lut_uses_official_table() -> None:
    lut = labelid_to_trainid_lut()
    assert lut.shape == (256,) and lut.dtype == np.uint8
    assert (lut[7], lut[8], lut[26], lut[33], lut[0], lut[1], lut[9]) == (
        0,
        1,
        13,
        18,
        255,
        255,
        255,
    )
    assert sorted(set(lut.tolist()) - {255}) == list(range(19))


def test_cityscapes_tree(tmp_path: Path) -> None:
    stem = "aachen_000000_000019"
    _rgb(tmp_path / "leftImg8bit/train/aachen" / f"{stem}_leftImg8bit.png", 4, 6)
    ids = np.array([[7, 26, 0, 8, 23, 24]] * 4, np.uint8)
    write_mask_png(tmp_path / "gtFine/train/aachen" / f"{stem}_gtFine_labelIds.png", ids)
    ds = open_dataset("cityscapes", tmp_path, "train")
    image, label, key = ds[0]
    assert key == stem and image.shape == (3, 4, 6) and image.dtype == torch.float32
    assert label.dtype == torch.long and label[0].tolist() == [0, 13, 255, 1, 10, 11]
    small = open_dataset(
        "cityscapes", tmp_path, "train", transform=Transform(size=(2, 3), keep_label_size=True)
    )
    image, label, _ = small[0]
    assert image.shape == (3, 2, 3) and label.shape == (4, 6)


def test_gta5_label_size_mismatch(tmp_path: Path) -> None:
    _rgb(tmp_path / "images/00001.png", 8, 12)
    write_mask_png(tmp_path / "labels/00001.png", np.array([[7, 26, 21]] * 2, np.uint8))
    image, label, key = open_dataset("gta5", tmp_path, "all")[0]
    assert key == "00001" and image.shape == (3, 8, 12) and label.shape == (8, 12)
    assert label[0].tolist() == [0] * 4 + [13] * 4 + [8] * 4


def test_gta5_split_list(tmp_path: Path) -> None:
    for n in ("00001", "00002"):
        _rgb(tmp_path / f"images/{n}.png", 2, 2)
        write_mask_png(tmp_path / f"labels/{n}.png", np.full((2, 2), 7, np.uint8))
    (tmp_path / "val.txt").write_text("00002.png\n")
    assert [ds[2] for ds in open_dataset("gta5", tmp_path, "val")] == ["00002"]
    with pytest.raises(FileNotFoundError):
        open_dataset("gta5", tmp_path, "test")


def test_synthia_16bit_labels(tmp_path: Path) -> None:
    classes = np.array([[3, 4, 2, 21, 8, 16, 22, 0]], np.uint16).repeat(2, 0)
    arr = np.stack([classes, np.full_like(classes, 300), np.zeros_like(classes)], -1)
    _png16_rgb(tmp_path / "GT/LABELS/0000000.png", arr)
    _rgb(tmp_path / "RGB/0000000.png", 2, 8)
    assert np.array_equal(read_synthia_label(tmp_path / "GT/LABELS/0000000.png"), classes)
    _, label, _ = open_dataset("synthia", tmp_path, "all")[0]
    assert label[0].tolist() == [0, 1, 2, 3, 13, 255, 255, 255]
    _, label16, _ = open_dataset("synthia", tmp_path, "all", num_classes=16)[0]
    assert label16[0].tolist() == [0, 1, 2, 3, 12, 255, 255, 255]
    _, label13, _ = open_dataset("synthia", tmp_path, "all", num_classes=13)[0]
    assert label13[0].tolist() == [0, 1, 2, 255, 9, 255, 255, 255]


def test_synthia_and_subset_luts() -> None:
    lut = synthia_to_trainid_lut()
    assert len(set(lut.tolist()) - {255}) == 16
    assert (lut[1], lut[10], lut[15], lut[17]) == (10, 11, 6, 12)
    assert sorted(set(class_subset_lut(16).tolist()) - {255}) == list(range(16))
    assert class_subset_lut(13)[13] == 9 and class_subset_lut(13)[5] == 255
    with pytest.raises(ValueError):
        class_subset_lut(7)


def test_synscapes_and_folder(tmp_path: Path) -> None:
    _rgb(tmp_path / "syn/img/rgb/1.png", 3, 3)
    write_mask_png(tmp_path / "syn/img/class/1.png", np.full((3, 3), 26, np.uint8))
    _, label, key = open_dataset("synscapes", tmp_path / "syn", "all")[0]
    assert key == "1" and (label == 13).all()
    _rgb(tmp_path / "plain/target-val/images/000000.png", 4, 4)
    write_mask_png(tmp_path / "plain/target-val/labels/000000.png", np.full((4, 4), 8, np.uint8))
    ds = open_dataset(
        "folder", tmp_path / "plain", "target-val", transform=Transform(crop=(2, 2), flip=True)
    )
    image, label, key = ds[0]
    assert key == "target-val/000000" and image.shape == (3, 2, 2) and (label == 8).all()
    with pytest.raises(ValueError):
        open_dataset("kitti", tmp_path, "all")


@torch.inference_mode()
def evaluate_split(model_fn, dataset, num_classes: int) -> ConfusionMatrix:
    """Confusion matrix of ``model_fn`` over ``dataset``, one image at a time, with logits
    upsampled (bilinear) to the label's full resolution."""
    cm = ConfusionMatrix(num_classes)
    for index in range(len(dataset)):
        image, label, _ = dataset[index]
        size = tuple(label.shape[-2:])
        logits = torch.nn.functional.interpolate(
            model_fn(image[None]), size=size, mode="bilinear", align_corners=False
        )
        cm.update(logits.softmax(1).argmax(1), label[None])
    return cm


def test_evaluate_matches_official_cityscapes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(0)
    train_to_label = np.array([trainId2label[t].id for t in range(19)], np.uint8)
    preds, gts, pred_files = [], [], []
    for i in range(3):
        stem = f"lindau_000000_{i:06d}"
        _rgb(tmp_path / "leftImg8bit/val/lindau" / f"{stem}_leftImg8bit.png", 16, 24)
        gt = rng.integers(0, 34, (16, 24)).astype(np.uint8)
        gt[:4] = np.array([trainId2label[t].id for t in range(19)] + [0] * 5)  # all classes
        write_mask_png(tmp_path / "gtFine/val/lindau" / f"{stem}_gtFine_labelIds.png", gt)
        pred = rng.integers(0, 19, (16, 24))
        hit = rng.random((16, 24)) < 0.5
        pred[hit] = labelid_to_trainid_lut()[gt][hit]
        pred = np.where(pred == 255, 0, pred)
        write_mask_png(tmp_path / "pred" / f"{stem}.png", train_to_label[pred])
        preds.append(pred)
        gts.append(str(tmp_path / "gtFine/val/lindau" / f"{stem}_gtFine_labelIds.png"))
        pred_files.append(str(tmp_path / "pred" / f"{stem}.png"))
    for name, value in [("evalInstLevelScore", False), ("JSONOutput", False), ("quiet", True)]:
        monkeypatch.setattr(cs_eval.args, name, value)
    official = cs_eval.evaluateImgLists(pred_files, gts, cs_eval.args)
    calls = iter(preds)

    def model_fn(x: torch.Tensor) -> torch.Tensor:  # one-hot logits of the written prediction
        assert x.shape == (1, 3, 16, 24)
        return (
            torch.nn.functional.one_hot(torch.from_numpy(next(calls)), 19)
            .permute(2, 0, 1)[None]
            .float()
        )

    ds = open_dataset("cityscapes", tmp_path, "val", transform=Transform(keep_label_size=True))
    cm = evaluate_split(model_fn, ds, 19)
    assert cm.miou() == pytest.approx(official["averageScoreClasses"] * 100, abs=1e-9)
    ours = dict(zip([trainId2label[t].name for t in range(19)], cm.iou().tolist(), strict=True))
    for name, iou in ours.items():
        assert iou == pytest.approx(official["classScores"][name], abs=1e-12)
