"""Tests for trainer/data/synth.py: the bundled procedural benchmark."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from trainer.data.synth import (
    CLASSES,
    DEFAULT_COUNTS,
    generate_benchmark,
    render_scene,
    sample_layout,
)

SMALL = {"source-train": 24, "target-train": 24, "target-val": 4}


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_benchmark(tmp_path_factory.mktemp("bench"), counts=SMALL, seed=3)


def _load(root: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    names = sorted((root / split / "labels").glob("*.png"))
    images = np.stack([np.array(Image.open(root / split / "images" / p.name)) for p in names])
    labels = np.stack([np.array(Image.open(p)) for p in names])
    return images, labels


def test_constants() -> None:
    assert len(CLASSES) >= 8
    assert CLASSES[0] == ("road", (128, 64, 128))
    assert CLASSES[7] == ("car", (0, 0, 142))
    assert DEFAULT_COUNTS == {
        "source-train": 500,
        "target-train": 500,
        "target-val": 100,
        "target-test": 200,
    }


def test_folder_format(bench: Path) -> None:
    classes = json.loads((bench / "classes.json").read_text())["classes"]
    assert classes[0] == {"id": 0, "name": "road", "color": [128, 64, 128]}
    assert [c["id"] for c in classes] == list(range(len(CLASSES)))
    for split, n in SMALL.items():
        assert len(list((bench / split / "images").glob("*.png"))) == n
        im = Image.open(bench / split / "images" / "000000.png")
        lab = Image.open(bench / split / "labels" / "000000.png")
        assert (im.mode, im.size) == ("RGB", (128, 64))
        assert (lab.mode, lab.size) == ("L", (128, 64))
    meta = json.loads((bench / "meta.json").read_text())
    assert meta["seed"] == 3 and meta["counts"] == dict(sorted(SMALL.items()))


def test_labels_valid_and_every_class_appears(bench: Path) -> None:
    seen: set[int] = set()
    for split in ("source-train", "target-train"):
        _, labels = _load(bench, split)
        values = set(np.unique(labels).tolist())
        assert values <= set(range(len(CLASSES))) | {255}
        assert set(range(len(CLASSES))) <= values, f"{split} misses classes"
        seen |= values
    assert 255 in seen  # the target ego-vehicle hood


def test_reproducible_and_cached(tmp_path: Path, bench: Path) -> None:
    other = generate_benchmark(tmp_path / "b", counts=SMALL, seed=3, workers=2)
    for split in SMALL:
        for p in sorted((bench / split).rglob("*.png")):
            assert p.read_bytes() == (other / p.relative_to(bench)).read_bytes()
    probe = other / "source-train" / "images" / "000000.png"
    stamp = probe.stat().st_mtime_ns
    generate_benchmark(other, counts=SMALL, seed=3)
    assert probe.stat().st_mtime_ns == stamp  # cached: nothing rewritten
    generate_benchmark(other, counts={"source-train": 2}, seed=4)
    assert not (other / "target-train").exists()
    assert len(list((other / "source-train" / "images").glob("*.png"))) == 2
    assert probe.read_bytes() != (bench / "source-train" / "images" / "000000.png").read_bytes()


def test_splits_use_different_streams(bench: Path) -> None:
    a = (bench / "target-train" / "labels" / "000000.png").read_bytes()
    b = (bench / "target-val" / "labels" / "000000.png").read_bytes()
    assert a != b


def test_domains_differ_per_class_colour(bench: Path) -> None:
    src_img, src_lab = _load(bench, "source-train")
    trg_img, trg_lab = _load(bench, "target-train")
    mean_s = np.stack([src_img[src_lab == c].mean(0) for c in range(len(CLASSES))])
    mean_t = np.stack([trg_img[trg_lab == c].mean(0) for c in range(len(CLASSES))])
    dist = np.linalg.norm(mean_s - mean_t, axis=1)
    assert (dist > 25).all() and (dist[[0, 1, 2, 6, 8]] > 60).all()
    # colour closeness swaps: target road is nearer to source sidewalk than to source road
    assert np.linalg.norm(mean_t[0] - mean_s[1]) < np.linalg.norm(mean_t[0] - mean_s[0])

    # target is textured, source flat: road pixels of one image vary only in the target
    def spread(img: np.ndarray, lab: np.ndarray) -> float:
        road = img[lab == 0].astype(float)
        return float(np.median(np.abs(road - np.median(road, 0))))

    assert spread(src_img[0], src_lab[0]) < 1.0 < 5.0 < spread(trg_img[0], trg_lab[0])


def test_layout_statistics_differ() -> None:
    rng = np.random.default_rng(0)
    src = [sample_layout(rng, 64, 128, "source").horizon for _ in range(50)]
    trg = [sample_layout(rng, 64, 128, "target").horizon for _ in range(50)]
    assert np.mean(trg) - np.mean(src) > 3


def test_render_scene_shapes_and_errors() -> None:
    rng = np.random.default_rng(1)
    layout = sample_layout(rng, 48, 96, "target")
    assert layout.labels.shape == layout.instance.shape == (48, 96)
    img = render_scene(layout, "source", rng)
    assert img.shape == (48, 96, 3) and img.dtype == np.uint8
    with pytest.raises(ValueError):
        render_scene(layout, "night", rng)
    with pytest.raises(ValueError):
        sample_layout(rng, 48, 96, "night")
