"""The one checkpoint format (trainer/loop/checkpoint.py): written, read back, older files upgraded
or refused with a message."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.userdata import make_user_folder
from trainer.config import TrainConfig
from trainer.learning.labelbank import LabelBank
from trainer.loop import checkpoint
from trainer.nets.model import build_model


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("small", 3, embed_dim=8)


def test_payload_round_trip(tmp_path: Path) -> None:
    cfg = TrainConfig(embed_dim=8, crop=(16, 24))
    model, bank = _model(), LabelBank(2, 4, 4)
    bank.merge(torch.tensor([0]), torch.tensor([1]), torch.tensor([2]), torch.tensor([1]), "high")
    classes = checkpoint.class_table(["sky", "road", "car"], [(1, 2, 3)])
    path = tmp_path / "m.pt"
    checkpoint.save(path, checkpoint.payload(cfg, model, classes, (16, 24), bank, iteration=7))
    ckpt = checkpoint.load(path)
    assert ckpt.raw["format"] == "adamcu.checkpoint" and ckpt.raw["version"] == 1
    assert [c.name for c in ckpt.classes] == ["sky", "road", "car"]
    assert ckpt.classes[0].color == (1, 2, 3) and ckpt.image_size == (16, 24)
    assert ckpt.config.crop == (16, 24) and ckpt.raw["iteration"] == 7
    assert ckpt.raw["label_summary"]["labeled_pixels"] == 1 and ckpt.raw["label_bank"] is None
    assert ckpt.normalization["std"] == [0.229, 0.224, 0.225]
    rebuilt = checkpoint.build(ckpt)
    x = torch.randn(1, 3, 16, 24)
    model.eval()
    assert torch.allclose(rebuilt(x).main, model(x).main)


def test_older_files_load_or_are_refused_with_a_message(tmp_path: Path) -> None:
    model = _model()
    cfg = TrainConfig(embed_dim=8, data_root=str(tmp_path / "gone")).to_dict()
    old_train = tmp_path / "train.pt"  # adamcu train before the format
    torch.save(
        {"config": cfg, "model": model.state_dict(), "class_names": ["a", "b", "c"]}, old_train
    )
    assert [c.name for c in checkpoint.load(old_train).classes] == ["a", "b", "c"]
    old_worker = tmp_path / "worker.pt"  # no class table: read from its data folder
    torch.save({"config": cfg, "model": model.state_dict(), "iteration": 3}, old_worker)
    old_ddp = tmp_path / "ddp.pt"  # trainer.distributed before the format: its own dict
    bank = LabelBank(1, 4, 4).state_dict()
    torch.save({"config": cfg, "model": model.state_dict(), "bank": bank, "point": {}}, old_ddp)
    for old in (old_worker, old_ddp):
        with pytest.raises(checkpoint.CheckpointError, match="older worker or DDP checkpoint"):
            checkpoint.load(old)
    make_user_folder(tmp_path / "gone", {"target-train": 1})
    for old in (old_worker, old_ddp):
        assert [c.name for c in checkpoint.load(old).classes] == ["sky", "road", "car"]
    bare = tmp_path / "bare.pt"
    torch.save(model.state_dict(), bare)
    with pytest.raises(checkpoint.CheckpointError, match="bare state dict.*init_checkpoint"):
        checkpoint.load(bare)
    newer = tmp_path / "newer.pt"
    torch.save({"format": "adamcu.checkpoint", "version": 99, "config": cfg, "model": {}}, newer)
    with pytest.raises(checkpoint.CheckpointError, match="upgrade adamcu"):
        checkpoint.load(newer)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(checkpoint.CheckpointError, match="not a checkpoint"):
        checkpoint.load(junk)
    with pytest.raises(FileNotFoundError):
        checkpoint.load(tmp_path / "missing.pt")


def test_unknown_config_keys_of_another_version_are_dropped(tmp_path: Path) -> None:
    cfg = {**TrainConfig(embed_dim=8).to_dict(), "a_future_field": 1}
    path = tmp_path / "m.pt"
    classes = checkpoint.class_table(["a", "b", "c"], [])
    data = checkpoint.payload(TrainConfig(embed_dim=8), _model(), classes, (8, 8))
    checkpoint.save(path, {**data, "config": cfg})
    assert checkpoint.load(path).config.embed_dim == 8


def test_a_pretraining_cache_of_either_age_gives_its_weights(tmp_path: Path) -> None:
    """The cache is the one format now (one process and DDP); DDP's older caches were a bare
    state dict, which still loads as the cache's weights."""
    model = _model()
    classes = checkpoint.class_table(["a", "b", "c"], [])
    now, old = tmp_path / "now.pt", tmp_path / "old.pt"
    checkpoint.save(now, checkpoint.payload(TrainConfig(embed_dim=8), model, classes, (8, 8)))
    torch.save(model.state_dict(), old)
    for path in (now, old):
        weights = checkpoint.cached_weights(path, "cpu")
        assert weights.keys() == model.state_dict().keys()
        assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())
