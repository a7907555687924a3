"""Tests for trainer/data/synth.py: the bundled procedural benchmark."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from trainer.data.synth import (
    CLASSES,
    DEFAULT_COUNTS,
    DEFAULT_SHIFT,
    SHIFTS,
    generate_benchmark,
    render_scene,
    sample_layout,
)
from trainer.data.synth_shift import SOURCE_PALETTE

SMALL = {"source-train": 24, "target-train": 24, "target-val": 4}


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_benchmark(tmp_path_factory.mktemp("bench"), counts=SMALL, seed=3)


@pytest.fixture(scope="module")
def hard(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_benchmark(tmp_path_factory.mktemp("hard"), counts=SMALL, seed=3, shift="hard")


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
    assert meta["shift"] == DEFAULT_SHIFT == "moderate"


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


def _class_means(root: Path) -> tuple[np.ndarray, np.ndarray]:
    """Mean colour per class (C, 3) of source-train and of target-train."""
    means = []
    for split in ("source-train", "target-train"):
        img, lab = _load(root, split)
        means.append(np.stack([img[lab == c].mean(0) for c in range(len(CLASSES))]))
    return means[0], means[1]


def _digest(root: Path) -> str:
    """sha256 over every image, label and classes.json (meta.json left out), by path."""
    h = hashlib.sha256()
    for p in sorted(root.rglob("*.png")) + [root / "classes.json"]:
        h.update(str(p.relative_to(root)).encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def test_hard_shift_is_the_version_2_generator_byte_for_byte(tmp_path: Path) -> None:
    # digest of this call's output computed with the generator before `--shift` existed
    # (commit f9724ff, where the swapped palette was the only target look)
    counts = {"source-train": 6, "target-train": 6, "target-val": 3, "target-test": 3}
    root = generate_benchmark(tmp_path, counts=counts, seed=11, shift="hard")
    assert _digest(root) == "a7ab996dfd59d419a8eb617f2e661992cdc336e9f240b4bdbec25e6051bfd701"
    assert json.loads((root / "meta.json").read_text())["shift"] == "hard"


def test_shifts_share_the_source_and_the_labels(bench: Path, hard: Path) -> None:
    for split in SMALL:
        for p in sorted((bench / split / "labels").glob("*.png")):
            assert p.read_bytes() == (hard / p.relative_to(bench)).read_bytes()
    for p in sorted((bench / "source-train" / "images").glob("*.png")):
        assert p.read_bytes() == (hard / p.relative_to(bench)).read_bytes()
    a = (bench / "target-train" / "images" / "000000.png").read_bytes()
    assert a != (hard / "target-train" / "images" / "000000.png").read_bytes()


def test_moderate_shift_keeps_class_identity(bench: Path) -> None:
    palette = SHIFTS["moderate"].palette
    dist = np.linalg.norm(palette[:, None] - SOURCE_PALETTE[None], axis=2)
    assert (dist.argmin(1) == np.arange(len(CLASSES))).all()
    mean_s, mean_t = _class_means(bench)
    dist = np.linalg.norm(mean_t[:, None] - mean_s[None], axis=2)
    assert (dist.argmin(1) == np.arange(len(CLASSES))).all()  # in the rendered images too
    assert (np.diag(dist) > 5).all()  # but the colours did move


def test_hard_shift_swaps_class_colours(hard: Path) -> None:
    mean_s, mean_t = _class_means(hard)
    dist = np.linalg.norm(mean_s - mean_t, axis=1)
    assert (dist > 25).all() and (dist[[0, 1, 2, 6, 8]] > 60).all()
    # colour closeness swaps: target road is nearer to source sidewalk than to source road
    assert np.linalg.norm(mean_t[0] - mean_s[1]) < np.linalg.norm(mean_t[0] - mean_s[0])


@pytest.mark.parametrize("shift", ["moderate", "hard"])
def test_target_is_textured_source_flat(bench: Path, hard: Path, shift: str) -> None:
    root = bench if shift == "moderate" else hard
    src_img, src_lab = _load(root, "source-train")
    trg_img, trg_lab = _load(root, "target-train")

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
    with pytest.raises(ValueError, match="unknown shift"):
        render_scene(layout, "target", rng, "night")


def test_unknown_shift_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"choose from \['hard', 'moderate'\]"):
        generate_benchmark(tmp_path / "b", counts={"source-train": 1}, shift="night")
    assert not (tmp_path / "b").exists()


def test_shift_changes_the_cache_key(tmp_path: Path) -> None:
    counts = {"target-val": 2}
    generate_benchmark(tmp_path, counts=counts, seed=5, shift="hard")
    probe = tmp_path / "target-val" / "images" / "000000.png"
    before = probe.read_bytes()
    generate_benchmark(tmp_path, counts=counts, seed=5)
    assert probe.read_bytes() != before  # regenerated in the default look
    assert json.loads((tmp_path / "meta.json").read_text())["shift"] == "moderate"


def test_generate_command_passes_the_shift(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from stack.cli import main

    out = tmp_path / "b"
    args = ["generate", "--out", str(out)]
    args += [f"--count={split}=1" for split in DEFAULT_COUNTS]
    assert main([*args, "--shift", "hard"]) == 0
    assert json.loads((out / "meta.json").read_text())["shift"] == "hard"
    assert main([*args[:2], str(tmp_path / "c"), *args[3:], "--shift", "night"]) == 2
    assert "unknown shift 'night'; choose from ['hard', 'moderate']" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()
