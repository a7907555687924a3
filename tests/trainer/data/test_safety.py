"""Generators never touch a user's data (trainer/data/safety.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from trainer.data.safety import (
    UnsafeFolderError,
    check_generation_target,
    claim_output_folder,
    is_user_dataset,
)
from trainer.data.synth import generate_benchmark

TINY = {"source-train": 2, "target-train": 2}


def _user_folder(root: Path) -> Path:
    photo = root / "source-train" / "images" / "my_photo.png"
    photo.parent.mkdir(parents=True)
    Image.fromarray(np.full((8, 8, 3), 7, np.uint8)).save(photo)
    (root / "classes.json").write_text(json.dumps({"classes": [{"id": 0, "name": "mine"}]}))
    return photo


def test_generate_refuses_a_user_folder_and_keeps_its_files(tmp_path: Path) -> None:
    photo = _user_folder(tmp_path)
    before = photo.read_bytes(), (tmp_path / "classes.json").read_text()
    with pytest.raises(UnsafeFolderError, match=str(tmp_path)) as err:
        generate_benchmark(tmp_path, height=8, width=16, counts=TINY)
    assert "adamcu bench --data" in str(err.value)
    assert (photo.read_bytes(), (tmp_path / "classes.json").read_text()) == before
    assert sorted(p.name for p in (tmp_path / "source-train" / "images").iterdir()) == [
        "my_photo.png"
    ]
    assert not (tmp_path / "meta.json").exists()


def test_generate_refuses_any_foreign_non_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(UnsafeFolderError, match="new or empty folder"):
        generate_benchmark(tmp_path, height=8, width=16, counts=TINY)
    assert (tmp_path / "notes.txt").read_text() == "mine"
    (tmp_path / "meta.json").write_text(json.dumps({"generator": "someone-else"}))
    with pytest.raises(UnsafeFolderError):
        check_generation_target(tmp_path)


def test_generate_writes_new_empty_and_its_own_folders(tmp_path: Path) -> None:
    root = tmp_path / "new"
    generate_benchmark(root, height=8, width=16, counts=TINY)
    assert not is_user_dataset(root)
    generate_benchmark(root, height=8, width=16, counts={"target-train": 1})  # its own: rewritten
    assert sorted(p.name for p in root.iterdir()) == ["classes.json", "meta.json", "target-train"]
    (tmp_path / "empty").mkdir()
    generate_benchmark(tmp_path / "empty", height=8, width=16, counts=TINY)
    file = tmp_path / "file"
    file.write_text("x")
    with pytest.raises(UnsafeFolderError, match="is a file"):
        check_generation_target(file)


def test_an_output_folder_is_claimed_only_when_new_empty_or_already_ours(tmp_path: Path) -> None:
    new, empty, foreign = tmp_path / "new", tmp_path / "empty", tmp_path / "foreign"
    empty.mkdir()
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    for root in (new, empty):
        claim_output_folder(root, ".tool", "tool")
        assert json.loads((root / ".tool").read_text()) == {"written_by": "tool"}
    (new / "adamcu.db").write_text("the tool's own")  # a later run finds its marker
    claim_output_folder(new, ".tool", "tool")
    with pytest.raises(UnsafeFolderError, match="not written by `tool`"):
        claim_output_folder(foreign, ".tool", "tool")
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]
    with pytest.raises(UnsafeFolderError, match="is a file"):
        claim_output_folder(foreign / "notes.txt", ".tool", "tool")
