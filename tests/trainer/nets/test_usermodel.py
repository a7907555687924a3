"""Your own network: ``model = "package.module:function"`` (trainer/nets/usermodel.py), a tiny user
model defined here, the logits adapter, and ``init_checkpoint``."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from tests.userdata import make_user_folder
from trainer.bench.experiment import run_strategy
from trainer.config import TrainConfig
from trainer.loop import checkpoint
from trainer.loop.train import load_data
from trainer.nets.model import build_model, param_groups
from trainer.strategies import configure

HERE = "tests.trainer.nets.test_usermodel"


class TinyNet(nn.Module):
    """A user's network: two convs, stride 2, logits only (or the full protocol)."""

    def __init__(self, num_classes: int, embed_dim: int = 8, protocol: bool = False) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU()
        )
        self.classifier = nn.Conv2d(16, num_classes, 1)
        self.protocol = protocol
        if protocol:
            self.aux = nn.Conv2d(16, num_classes, 1)
            self.embed = nn.Conv2d(16, embed_dim, 1)

    def forward(self, x):
        f = self.body(x)
        if self.protocol:
            return self.classifier(f), self.aux(f), self.embed(f)
        return self.classifier(f)


def tiny_logits(num_classes: int) -> nn.Module:
    return TinyNet(num_classes)


def tiny_protocol(num_classes: int, embed_dim: int) -> nn.Module:
    return TinyNet(num_classes, embed_dim, protocol=True)


def wrong_channels(num_classes: int) -> nn.Module:
    return nn.Conv2d(3, num_classes + 1, 1)


def test_both_kinds_give_a_seg_output() -> None:
    x = torch.randn(2, 3, 16, 24)
    for fn in ("tiny_logits", "tiny_protocol"):
        model = build_model(f"{HERE}:{fn}", 3, embed_dim=8)
        out = model(x)
        assert out.main.shape == out.aux.shape == (2, 3, 8, 12)
        assert out.embedding.shape == (2, 8, 8, 12)
        assert torch.allclose(out.embedding.norm(dim=1), torch.ones(2, 8, 12), atol=1e-4)
    adapter = build_model(f"{HERE}:tiny_logits", 3, embed_dim=8)
    out = adapter.eval()(x)
    assert torch.allclose(out.aux, out.main, atol=1e-6)  # the aux head starts as the identity
    names = [g["name"] for g in param_groups(adapter, 0.01, 10.0)]
    assert names == ["backbone", "heads"]


def test_protocol_breaches_are_named() -> None:
    with pytest.raises(ValueError, match=r"logits must be \(N, 3, h, w\)"):
        build_model(f"{HERE}:wrong_channels", 3)
    with pytest.raises(ValueError, match="cannot import"):
        build_model("no_such_package.nets:net", 3)
    with pytest.raises(ValueError, match="has no function"):
        build_model(f"{HERE}:missing", 3)


def test_a_user_model_adapts_and_starts_from_its_own_weights(tmp_path: Path) -> None:
    data_dir = make_user_folder(tmp_path / "data")
    cfg = configure(
        TrainConfig(),
        "full",
        data_root=str(data_dir),
        model=f"{HERE}:tiny_logits",
        embed_dim=8,
        pretrain_iterations=3,
        iterations=2,
        eval_every=2,
        budget_rate=0.01,
    )
    data = load_data(cfg)
    result = run_strategy(cfg, data, tmp_path / "cache", checkpoint=tmp_path / "run.pt")
    # M_e = 1 % of 8 target images of 32 x 48 (12,288 pixels) = 122; the query window is
    # round(2 x 6 / 16) = 1 of the 2 iterations, all high phase: M_e // 2 = 61 from G_h
    assert result["expected_pixels"] == 122 and result["spent"]["high"] == 61
    assert result["labeled_pixels"] == sum(result["spent"].values()) == 61
    ckpt = checkpoint.load(tmp_path / "run.pt")
    assert ckpt.config.model == f"{HERE}:tiny_logits"
    assert isinstance(checkpoint.build(ckpt), nn.Module)
    # init_checkpoint: the user's plain network, trained elsewhere, saved as a state dict
    net = TinyNet(3)
    torch.nn.init.constant_(net.classifier.bias, 0.5)
    torch.save(net.state_dict(), tmp_path / "mine.pt")
    start = cfg.replace(init_checkpoint=str(tmp_path / "mine.pt"), iterations=0, passes=0)
    run_strategy(start, data, None, checkpoint=tmp_path / "start.pt")
    state = checkpoint.load(tmp_path / "start.pt").state
    assert torch.equal(state["backbone.classifier.bias"], torch.full((3,), 0.5))
    # and from an adamcu checkpoint with the same classes (no pre-training)
    again = cfg.replace(init_checkpoint=str(tmp_path / "run.pt"), iterations=0, passes=0)
    run_strategy(again, data, None, checkpoint=tmp_path / "again.pt")
    for k, v in checkpoint.load(tmp_path / "again.pt").state.items():
        assert torch.equal(v, ckpt.state[k]), k
    wrong = tmp_path / "wrong.pt"
    torch.save(nn.Conv2d(3, 5, 1).state_dict(), wrong)
    with pytest.raises(checkpoint.CheckpointError, match="does not fit"):
        run_strategy(cfg.replace(init_checkpoint=str(wrong)), data, None)


def test_the_documented_example_networks_build() -> None:
    x = torch.randn(1, 3, 32, 48)
    for fn in ("plain_segnet", "protocol_segnet"):
        out = build_model(f"examples.my_nets:{fn}", 3, embed_dim=8)(x)
        assert out.main.shape == (1, 3, 8, 12) and out.embedding.shape == (1, 8, 8, 12)
