"""Tests for trainer/data/folder.py: plain folder format, normalisation, joint transforms."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from trainer.data.folder import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ClassInfo,
    hflip,
    load_classes,
    load_split,
    random_scale_crop,
    read_mask_png,
    resize,
    to_float,
    write_mask_png,
)


def _tree(root: Path, n: int = 3) -> None:
    classes = [
        {"id": 0, "name": "road", "color": [128, 64, 128]},
        {"id": 1, "name": "car", "color": [0, 0, 142]},
    ]
    (root / "classes.json").write_text(json.dumps({"classes": classes}))
    for i in range(n):
        img = np.full((4, 6, 3), 10 * i, np.uint8)
        lab = np.full((4, 6), i % 2, np.uint8)
        lab[0, 0] = 255
        (root / "s" / "images").mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(root / "s" / "images" / f"{i:06d}.png")
        write_mask_png(root / "s" / "labels" / f"{i:06d}.png", lab)


def test_load_classes(tmp_path: Path) -> None:
    _tree(tmp_path)
    assert load_classes(tmp_path) == [
        ClassInfo(0, "road", (128, 64, 128)),
        ClassInfo(1, "car", (0, 0, 142)),
    ]


def test_load_split_and_translated(tmp_path: Path) -> None:
    _tree(tmp_path)
    split = load_split(tmp_path, "s")
    assert split.images.shape == (3, 3, 4, 6) and split.images.dtype == torch.uint8
    assert split.labels.shape == (3, 4, 6) and split.labels.dtype == torch.uint8
    assert split.ids == ["s/000000", "s/000001", "s/000002"]
    assert split.images[2, :, 1, 1].tolist() == [20, 20, 20]
    assert split.labels[1, 0, 0] == 255 and split.labels[1, 1, 1] == 1
    trans = tmp_path / "translated"
    trans.mkdir()
    for i in range(3):
        Image.fromarray(np.full((4, 6, 3), 200, np.uint8)).save(trans / f"{i:06d}.png")
    moved = load_split(tmp_path, "s", translated_dir=trans)
    assert (moved.images == 200).all() and torch.equal(moved.labels, split.labels)


def test_mask_png_roundtrip(tmp_path: Path) -> None:
    mask = np.array([[0, 1, 255], [18, 7, 3]], np.uint8)
    write_mask_png(tmp_path / "m.png", torch.from_numpy(mask))
    assert np.array_equal(read_mask_png(tmp_path / "m.png"), mask)
    with pytest.raises(ValueError):
        write_mask_png(tmp_path / "bad.png", np.full((2, 2), 300))


def test_normalisation_roundtrip() -> None:
    img = torch.tensor([[[0, 255]], [[124, 116]], [[104, 255]]], dtype=torch.uint8)  # (3,1,2)
    x = to_float(img)
    assert x.dtype == torch.float32
    assert x[0, 0, 0].item() == pytest.approx(-0.485 / 0.229)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    assert torch.allclose((x * std + mean) * 255, img.float(), atol=1e-4)
    assert to_float(img[None]).shape == (1, 3, 1, 2)


def test_hflip_moves_image_and_label_together() -> None:
    img = torch.arange(3 * 3 * 4).view(3, 3, 4).float()
    lab = torch.arange(12).view(3, 4)
    gen = torch.Generator().manual_seed(0)
    out_img, out_lab = hflip(img, lab, gen, p=1.0)
    assert torch.equal(out_img[0, :, 0], img[0, :, 3]) and torch.equal(out_lab[:, 0], lab[:, 3])
    same = hflip(img, lab, gen, p=0.0)
    assert torch.equal(same[1], lab)


def test_resize_bilinear_image_nearest_label() -> None:
    img = torch.zeros(3, 4, 4, dtype=torch.uint8)
    img[:, :, 2:] = 200
    lab = torch.tensor([[0, 0, 5, 5]] * 4, dtype=torch.uint8)
    out_img, out_lab = resize(img, lab, (8, 8))
    assert out_img.dtype == torch.uint8 and out_img.shape == (3, 8, 8)
    assert out_lab[0].tolist() == [0, 0, 0, 0, 5, 5, 5, 5]  # nearest: no blended ids
    # bilinear (half-pixel centres): output column x samples input column (x + 0.5) / 2 - 0.5,
    # so columns 3 and 4 sit at 1.25 and 1.75, a quarter and three quarters of the way to 200
    assert out_img[0, 0].tolist() == [0, 0, 0, 50, 150, 200, 200, 200]
    batch_img, batch_lab = resize(img[None].float(), lab[None], (2, 2))
    assert batch_img.shape == (1, 3, 2, 2) and batch_lab.tolist() == [[[0, 5], [0, 5]]]


def test_random_scale_crop_pads_label_with_ignore() -> None:
    img = torch.ones(3, 4, 4)
    lab = torch.zeros(4, 4, dtype=torch.long)
    gen = torch.Generator().manual_seed(0)
    out_img, out_lab = random_scale_crop(img, lab, gen, (6, 6), scale=(1.0, 1.0))
    assert out_img.shape == (3, 6, 6) and out_lab.shape == (6, 6)
    assert (out_lab[4:] == 255).all() and (out_lab[:4, :4] == 0).all()
    assert (out_img[:, 4:] == 0).all() and (out_img[:, :4, :4] == 1).all()


def test_random_scale_crop_is_seeded_and_aligned() -> None:
    img = torch.arange(64.0).view(1, 8, 8).expand(3, 8, 8)
    lab = torch.arange(64).view(8, 8)
    a = random_scale_crop(img, lab, torch.Generator().manual_seed(5), (4, 4), (1.0, 1.0))
    b = random_scale_crop(img, lab, torch.Generator().manual_seed(5), (4, 4), (1.0, 1.0))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert torch.equal(a[0][0].long(), a[1])  # image and label cut at the same place
