"""The folder format's one validator (trainer/data/validate.py): each rule names the file, and
a malformed folder never ends in a traceback (the CLI exits 2 with a message)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from stack.cli import main
from trainer.data.folder import load_folder, load_split
from trainer.data.validate import DatasetError, read_classes, scan_split, validate_folder

CLASSES = [{"id": i, "name": n} for i, n in enumerate(("sky", "road", "car"))]
SPLITS = ["source-train", "target-train", "target-val", "target-test"]


def make_folder(root: Path, n: int = 2, h: int = 6, w: int = 8, suffix: str = ".jpg") -> Path:
    """A user-made folder: JPEG images, label PNGs with ids 0..2 and some 255."""
    (root / "classes.json").write_text(json.dumps({"classes": CLASSES}))
    rng = np.random.default_rng(0)
    for split in SPLITS:
        (root / split / "images").mkdir(parents=True)
        (root / split / "labels").mkdir()
        for i in range(n):
            img = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
            Image.fromarray(img).save(root / split / "images" / f"photo_{i}{suffix}")
            lab = rng.integers(0, 3, (h, w)).astype(np.uint8)
            lab[0, 0] = 255
            Image.fromarray(lab, "L").save(root / split / "labels" / f"photo_{i}.png")
    return root


def _error(root: Path, **kw) -> str:
    with pytest.raises(DatasetError) as err:
        validate_folder(root, **kw)
    return str(err.value)


def test_a_valid_user_folder_loads_with_jpeg_images(tmp_path: Path) -> None:
    make_folder(tmp_path)
    summary = validate_folder(tmp_path)
    assert summary["splits"]["target-train"] == {"images": 2, "labeled": True, "sizes": ["8x6"]}
    (src, tgt, *_), classes = load_folder(tmp_path, SPLITS)
    assert [c.name for c in classes] == ["sky", "road", "car"]
    assert tgt.ids == ["target-train/photo_0", "target-train/photo_1"]
    assert src.images.shape == (2, 3, 6, 8) and tgt.labels[0, 0, 0] == 255


def test_each_rule_names_the_file(tmp_path: Path) -> None:
    root = make_folder(tmp_path)
    labels = root / "target-val" / "labels"
    (labels / "photo_1.png").unlink()
    assert "missing label" in _error(root) and "photo_1.jpg" in _error(root)
    Image.fromarray(np.zeros((3, 3), np.uint8), "L").save(labels / "photo_1.png")
    assert "size mismatch" in _error(root) and "3x3" in _error(root)
    Image.fromarray(np.zeros((6, 8, 3), np.uint8)).save(labels / "photo_1.png")
    assert "single-channel" in _error(root)
    Image.fromarray(np.full((6, 8), 7, np.uint8), "L").save(labels / "photo_1.png")
    assert "class ids [7] are not in classes.json" in _error(root)
    (labels / "photo_1.png").write_bytes(b"not a png")
    assert f"{labels / 'photo_1.png'}: unreadable" in _error(root)


def test_images_labels_and_class_table_rules(tmp_path: Path) -> None:
    root = make_folder(tmp_path)
    images = root / "source-train" / "images"
    (images / "notes.txt").write_text("x")
    assert "notes.txt: not an image file" in _error(root)
    (images / "notes.txt").unlink()
    (images / "photo_0.png").write_bytes(b"garbage")
    msg = _error(root)
    assert "photo_0.png: unreadable image" in msg or "same key" in msg
    (images / "photo_0.png").unlink()
    Image.fromarray(np.zeros((6, 8), np.uint8), "L").save(
        root / "source-train" / "labels" / "photo_0.jpg"
    )
    assert "labels must be .png" in _error(root)
    (root / "source-train" / "labels" / "photo_0.jpg").unlink()
    for bad, rule in [
        ([{"id": 0, "name": "a"}, {"id": 2, "name": "b"}], "exactly 0..1"),
        ([{"id": "0", "name": "a"}], "must be an integer"),
        ([{"id": 0, "name": "a", "color": [1, 2]}], "color"),
        ([{"id": 0, "name": "a"}, {"id": 1, "name": "a"}], "unique"),
    ]:
        (root / "classes.json").write_text(json.dumps({"classes": bad}))
        assert rule in _error(root)
    (root / "classes.json").write_text(json.dumps([{"id": 0, "name": "a"}]))  # the old export
    assert '{"classes": [' in _error(root)


def test_unlabeled_target_and_mixed_sizes(tmp_path: Path) -> None:
    root = make_folder(tmp_path)
    for p in (root / "target-train" / "labels").iterdir():
        p.unlink()
    (root / "target-train" / "labels").rmdir()
    assert "needs labels" in _error(root)
    assert (
        validate_folder(root, unlabeled=("target-train",))["splits"]["target-train"]["labeled"]
        is False
    )
    (_, tgt, *_), _ = load_folder(root, SPLITS, unlabeled=("target-train",))
    assert bool((tgt.labels == 255).all())
    assert tgt.labels.shape == tgt.images[:, 0].shape
    assert tgt.labels.untyped_storage().nbytes() == 1  # no N*H*W bytes of 255 for a session
    img = root / "target-test" / "images" / "photo_0.jpg"  # a bigger image and label
    Image.fromarray(np.zeros((12, 16, 3), np.uint8)).save(img)
    Image.fromarray(np.ones((12, 16), np.uint8), "L").save(img.parent.parent / "labels/photo_0.png")
    loaded, _ = load_folder(root, SPLITS, unlabeled=("target-train",))
    assert loaded[3].images.shape[-2:] == (6, 8)  # resized to the first target-train image
    assert bool((loaded[3].labels[0] == 1).all())  # nearest: ids kept
    loaded, _ = load_folder(root, SPLITS, crop=(4, 4), unlabeled=("target-train",))
    assert {s.images.shape[-2:] for s in loaded} == {(4, 4)}
    with pytest.raises(DatasetError, match="differ in size; set crop"):
        load_split(root, "target-test")


def test_cli_validate_prints_a_message_not_a_traceback(tmp_path: Path, capsys) -> None:
    root = make_folder(tmp_path)
    assert main(["validate", "--data", str(root)]) == 0
    assert "valid (3 classes)" in capsys.readouterr().out
    (root / "target-val" / "labels" / "photo_0.png").unlink()
    assert main(["validate", "--data", str(root)]) == 2
    err = capsys.readouterr().err
    assert "adamcu validate:" in err and "photo_0.jpg: missing label" in err
    assert "Traceback" not in err


MUTATIONS = st.lists(
    st.tuples(
        st.sampled_from(
            [
                "delete",
                "garbage",
                "truncate",
                "rgb",
                "resize",
                "values",
                "rename",
                "textfile",
                "rmdir",
            ]
        ),
        st.sampled_from(SPLITS),
        st.sampled_from(["images", "labels"]),
        st.integers(0, 1),
    ),
    min_size=1,
    max_size=4,
)


def _mutate(root: Path, op: str, split: str, kind: str, i: int) -> None:
    folder = root / split / kind
    files = sorted(folder.glob("*")) if folder.is_dir() else []
    if op == "rmdir" and folder.is_dir():
        for p in files:
            p.unlink()
        folder.rmdir()
        return
    if not files:
        return
    path = files[i % len(files)]
    if op == "delete":
        path.unlink()
    elif op == "garbage":
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(40)))
    elif op == "truncate":
        path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    elif op == "rgb":
        Image.fromarray(np.zeros((6, 8, 3), np.uint8)).save(path, format="PNG")
    elif op == "resize":
        Image.fromarray(np.zeros((5, 9), np.uint8), "L").save(path, format="PNG")
    elif op == "values":
        Image.fromarray(np.full((6, 8), 200, np.uint8), "L").save(path, format="PNG")
    elif op == "rename":
        path.rename(path.with_name("other" + path.suffix))
    elif op == "textfile":
        (folder / "README.txt").write_text("hello")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(MUTATIONS)
def test_malformed_folders_give_a_message_never_a_traceback(mutations) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = make_folder(Path(tmp), suffix=".png")
        for m in mutations:
            _mutate(root, *m)
        try:
            validate_folder(root)
        except DatasetError as exc:
            assert str(root) in str(exc) and exc.problems
        try:
            load_folder(root, SPLITS)
        except DatasetError as exc:
            assert exc.problems
        try:
            read_classes(root)
            scan_split(root, "target-train", labeled=None)
        except DatasetError:
            pass
        assert main(["validate", "--data", str(root)]) in (0, 2)
