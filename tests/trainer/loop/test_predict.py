"""adamcu predict / evaluate (trainer/loop/predict.py): label PNGs and overlays, mIoU of a split,
refusals with messages."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from stack.cli import main
from tests.userdata import make_user_folder, snapshot
from trainer.config import TrainConfig
from trainer.loop import checkpoint
from trainer.nets.model import build_model


@pytest.fixture
def ckpt(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    model = build_model("small", 3, embed_dim=8)
    classes = checkpoint.class_table(["sky", "road", "car"], [(70, 130, 180), (1, 2, 3), (4, 5, 6)])
    path = tmp_path / "model.pt"
    checkpoint.save(path, checkpoint.payload(TrainConfig(embed_dim=8), model, classes, (32, 48)))
    return path


def test_predict_writes_labels_and_overlays_and_touches_no_input(tmp_path: Path, ckpt, capsys):
    data = make_user_folder(tmp_path / "data", {"target-test": 3})
    images = data / "target-test" / "images"
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(images / "other_size.png")
    before = snapshot(data)
    out = tmp_path / "pred"
    args = ["predict", "--checkpoint", str(ckpt), "--images", str(images), "--out", str(out)]
    assert main(args) == 0
    assert "4 images segmented on cpu" in capsys.readouterr().out
    assert snapshot(data) == before
    labels = sorted(p.name for p in (out / "labels").iterdir())
    assert labels == ["IMG_1000.png", "IMG_1001.png", "IMG_1002.png", "other_size.png"]
    lab = np.asarray(Image.open(out / "labels" / "other_size.png"))
    assert lab.shape == (20, 30) and lab.dtype == np.uint8 and lab.max() <= 2
    assert Image.open(out / "overlays" / "IMG_1000.png").size == (48, 32)
    assert json.loads((out / "predict.json").read_text())["images"] == 4
    assert main(args) == 0  # its own earlier output: written again


def test_predict_refuses_foreign_outputs_and_bad_inputs(tmp_path: Path, ckpt, capsys) -> None:
    images = make_user_folder(tmp_path / "data", {"s": 1}) / "s" / "images"
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "IMG_1000.png").write_text("precious")
    base = ["predict", "--checkpoint", str(ckpt), "--images", str(images), "--out"]
    assert main(base + [str(mine)]) == 2
    assert "not an earlier `adamcu predict` output" in capsys.readouterr().err
    assert (mine / "IMG_1000.png").read_text() == "precious"
    assert main(base + [str(images / "out")]) == 2
    assert "inside --images" in capsys.readouterr().err
    (images / "broken.png").write_bytes(b"xx")
    assert main(base + [str(tmp_path / "p")]) == 2
    assert "broken.png: unreadable" in capsys.readouterr().err
    bare = tmp_path / "bare.pt"
    torch.save(build_model("small", 3).state_dict(), bare)
    (images / "broken.png").unlink()
    assert (
        main(
            [
                "predict",
                "--checkpoint",
                str(bare),
                "--images",
                str(images),
                "--out",
                str(tmp_path / "q"),
            ]
        )
        == 2
    )
    assert "bare state dict" in capsys.readouterr().err


def test_evaluate_prints_a_table_and_writes_json(tmp_path: Path, ckpt, capsys, monkeypatch):
    data = make_user_folder(tmp_path / "data", {"target-test": 2})
    out = tmp_path / "eval.json"
    args = ["evaluate", "--checkpoint", str(ckpt), "--data", str(data), "--split", "target-test"]
    assert main(args + ["--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "sky" in printed and "mIoU" in printed
    result = json.loads(out.read_text())
    assert result["images"] == 2 and [c["name"] for c in result["per_class"]] == [
        "sky",
        "road",
        "car",
    ]
    # mIoU is the mean of the reported per-class IoUs (rounded to 0.01), classes absent from
    # both prediction and labels left out
    ious = [c["iou"] for c in result["per_class"] if c["iou"] is not None]
    assert ious and abs(result["miou"] - sum(ious) / len(ious)) < 0.01
    # a perfect model scores 100: predictions equal to the labels
    from trainer.loop.predict import Predictor, evaluate_folder

    def oracle(self, rgb):
        return truth.pop(0)

    truth = [
        np.asarray(Image.open(p)).copy()
        for p in sorted((data / "target-test" / "labels").iterdir())
    ]
    for t in truth:
        t[t == 255] = 0
    monkeypatch.setattr(Predictor, "labels", oracle)
    assert evaluate_folder(ckpt, data, "target-test", progress=False)["miou"] == 100.0
    monkeypatch.undo()
    (data / "classes.json").write_text(json.dumps({"classes": [{"id": 0, "name": "x"}]}))
    assert main(args) == 2
    assert "differ from" in capsys.readouterr().err


def test_evaluate_bounds_the_pixels_of_a_batch_and_counts_the_same() -> None:
    """Paper-sized frames: 50 of them a batch held 8 GB of float input and logits."""
    from types import SimpleNamespace

    from trainer.data.folder import SplitTensors
    from trainer.loop.train import evaluate

    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (5, 3, 4, 8), dtype=torch.uint8, generator=gen)
    labels = torch.randint(0, 3, (5, 4, 8), dtype=torch.uint8, generator=gen)
    split = SplitTensors(images, labels, [f"t/{i}" for i in range(5)])
    seen = []

    def model(x):
        seen.append(len(x))
        return SimpleNamespace(main=x[:, :3] * torch.tensor([1.0, -1.0, 0.5]).view(1, 3, 1, 1))

    model.eval = lambda: None
    whole = evaluate(model, split, 3, torch.device("cpu"))
    assert seen == [5]
    seen.clear()
    bounded = evaluate(model, split, 3, torch.device("cpu"), max_pixels=64)  # 2 frames of 32
    assert seen == [2, 2, 1]
    assert torch.equal(whole.mat, bounded.mat) and int(whole.mat.sum()) == 5 * 32
