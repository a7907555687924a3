"""Tests for trainer/nets/model.py and trainer/nets/backbones.py: shapes, norms, BN freezing, LR
groups."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from trainer.nets.backbones import (
    FrozenBatchNorm2d,
    PretrainedWeightsError,
    ResNetFeatures,
    load_pretrained,
)
from trainer.nets.model import (
    SegModel,
    SegOutput,
    build_model,
    param_groups,
    poly_lr,
    set_lr,
)

C = 7


@pytest.fixture(scope="module")
def v2() -> SegModel:
    torch.manual_seed(0)
    return build_model("deeplabv2_r101", C).eval()


@pytest.fixture(scope="module")
def v3plus() -> SegModel:
    torch.manual_seed(0)
    return build_model("deeplabv3plus_r101", C).eval()


def _check_output(out: SegOutput, n: int, size: tuple[int, int], embed_dim: int = 64) -> None:
    assert isinstance(out, SegOutput)
    assert out.main.shape == (n, C, *size)
    assert out.aux.shape == (n, C, *size)
    assert out.embedding.shape == (n, embed_dim, *size)
    norms = out.embedding.float().norm(dim=1)
    torch.testing.assert_close(norms, torch.ones_like(norms), atol=1e-4, rtol=0)
    assert not torch.allclose(out.main.float(), out.aux.float())


@pytest.mark.parametrize(("n", "h", "w"), [(2, 64, 128), (1, 65, 65)])
def test_small_shapes_stride_4(n: int, h: int, w: int) -> None:
    model = build_model("small", C, embed_dim=16).train()
    out = model(torch.randn(n, 3, h, w))
    _check_output(out, n, (math.ceil(h / 4), math.ceil(w / 4)), embed_dim=16)


def test_deeplabv2_shapes_stride_8_aux_on_layer3(v2: SegModel) -> None:
    with torch.no_grad():
        out = v2(torch.randn(2, 3, 64, 128))
    _check_output(out, 2, (8, 16))
    assert v2.aux_head.branches[0].in_channels == 1024  # conv4 = layer3 (footnote 1)
    assert [b.dilation for b in v2.head.classifier.branches] == [(r, r) for r in (6, 12, 18, 24)]


def test_deeplabv3plus_shapes_decoder_stride_4(v3plus: SegModel) -> None:
    with torch.no_grad():
        out = v3plus(torch.randn(1, 3, 65, 65))
    _check_output(out, 1, (17, 17))


def test_small_parameter_count_in_range() -> None:
    n = sum(p.numel() for p in build_model("small", 19).parameters())
    assert 500_000 <= n <= 1_000_000


def test_unknown_name_and_small_pretrained_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown model"):
        build_model("resnet9000", C)
    with pytest.raises(ValueError, match="ResNet-101"):
        build_model("small", C, pretrained=tmp_path / "w.pth")


def test_frozen_bn_unchanged_by_training_step() -> None:
    torch.manual_seed(0)
    model = build_model("small", C, frozen_bn=True).train()
    frozen = [m for m in model.backbone.modules() if isinstance(m, FrozenBatchNorm2d)]
    assert frozen and not any(isinstance(m, nn.BatchNorm2d) for m in model.backbone.modules())
    before = [b.clone() for m in frozen for b in m.buffers()]
    head_bn = model.projection[1]
    head_mean = head_bn.running_mean.clone()
    opt = torch.optim.SGD(param_groups(model, 0.1), lr=0.1, momentum=0.9)
    out = model(torch.randn(2, 3, 32, 64))
    (out.main.logsumexp(1).mean() + out.aux.logsumexp(1).mean() + out.embedding.sum()).backward()
    opt.step()
    after = [b for m in frozen for b in m.buffers()]
    assert all(torch.equal(a, b) for a, b in zip(before, after, strict=True))
    assert not torch.equal(head_mean, head_bn.running_mean)  # head BN still learns


def test_param_groups_cover_trainable_params_once() -> None:
    model = build_model("small", C)
    model.backbone.stem[0].weight.requires_grad_(False)
    groups = param_groups(model, lr=0.01, weight_decay=5e-4)
    ids = [id(p) for g in groups for p in g["params"]]
    trainable = [id(p) for p in model.parameters() if p.requires_grad]
    assert len(ids) == len(set(ids)) and set(ids) == set(trainable)
    by_name = {g["name"]: g for g in groups}
    assert by_name["backbone"]["lr"] == pytest.approx(0.01) and by_name["backbone"]["lr_mult"] == 1
    assert by_name["heads"]["lr"] == pytest.approx(0.1) and by_name["heads"]["lr_mult"] == 10
    head_ids = {id(p) for p in by_name["heads"]["params"]}
    for part in (model.head, model.aux_head, model.projection):
        assert {id(p) for p in part.parameters()} <= head_ids
    assert all(g["weight_decay"] == 5e-4 for g in groups)
    wrapped = nn.Sequential()
    wrapped.module = model  # named like DDP: "module.backbone..."
    assert [len(g["params"]) for g in param_groups(wrapped, 0.01)] == [
        len(g["params"]) for g in groups
    ]


def test_poly_lr_and_set_lr() -> None:
    assert poly_lr(2.5e-4, 0, 100) == pytest.approx(2.5e-4)
    assert poly_lr(2.5e-4, 100, 100) == 0.0
    assert poly_lr(1.0, 50, 100) == pytest.approx(0.5**0.9)
    assert poly_lr(1.0, 150, 100) == 0.0
    model = build_model("small", C)
    opt = torch.optim.SGD(param_groups(model, 1.0), lr=1.0)
    set_lr(opt, 0.02)
    assert sorted(g["lr"] for g in opt.param_groups) == pytest.approx([0.02, 0.2])


def test_channels_last_and_bf16_autocast() -> None:
    model = build_model("small", C, frozen_bn=True).train().to(memory_format=torch.channels_last)
    x = torch.randn(2, 3, 32, 64).contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
        loss_target = torch.zeros(2, 8, 16, dtype=torch.long)
        loss = F.cross_entropy(out.main.float(), loss_target)
    loss.backward()
    assert out.embedding.dtype == torch.float32 and out.main.shape == (2, C, 8, 16)
    with torch.no_grad():  # bf16 autocast computes the float32 network, to bf16's precision
        full = model(x)
    scale = float(full.main.abs().max())
    assert torch.allclose(out.main.float(), full.main, atol=0.05 * scale)
    assert torch.allclose(out.embedding, full.embedding, atol=0.05)
    assert math.isclose(loss.item(), F.cross_entropy(full.main, loss_target).item(), rel_tol=0.02)


def _tv_state_dict(backbone: nn.Module) -> dict[str, torch.Tensor]:
    """A backbone's state dict plus the ImageNet `fc` keys, as in torchvision's file."""
    state = dict(backbone.state_dict())
    state["fc.weight"] = torch.zeros(1000, 2048)
    state["fc.bias"] = torch.zeros(1000)
    return state


def test_pretrained_round_trip(tmp_path: Path, v2: SegModel) -> None:
    state = _tv_state_dict(v2.backbone)
    assert "conv1.weight" in state and "layer3.22.conv3.weight" in state
    state["bn1.running_mean"] = torch.rand(64)  # non-trivial BN statistics
    path = tmp_path / "resnet101-test.pth"
    torch.save(state, path)
    # OS16 vs OS8 only changes strides/dilations, not weights; frozen BN keeps the values.
    model = build_model("deeplabv3plus_r101", C, pretrained=path, frozen_bn=True)
    assert isinstance(model.backbone.bn1, FrozenBatchNorm2d)
    loaded = model.backbone.state_dict()
    assert set(loaded) == {k for k in state if "fc." not in k and "num_batches" not in k}
    for k, v in loaded.items():
        assert torch.equal(v, state[k]), k


def test_bad_pretrained_file_gives_clear_error(tmp_path: Path) -> None:
    backbone = ResNetFeatures("resnet50")
    state = dict(backbone.state_dict())
    state.pop("layer2.0.conv1.weight")
    state["head.weight"] = torch.zeros(3)
    state["conv1.weight"] = torch.zeros(64, 3, 3, 3)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(PretrainedWeightsError) as err:
        load_pretrained(backbone, tmp_path / "bad.pth")
    msg = str(err.value)
    assert "1 missing keys: layer2.0.conv1.weight" in msg
    assert "1 unexpected keys: head.weight" in msg
    assert "conv1.weight (64, 3, 3, 3) != (64, 3, 7, 7)" in msg
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(PretrainedWeightsError, match="not a state dict"):
        load_pretrained(backbone, tmp_path / "list.pth")
    with pytest.raises(FileNotFoundError):
        load_pretrained(backbone, tmp_path / "absent.pth")


def _torchvision_features(net: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """layer1, layer3 and layer4 of a torchvision ResNet, as its own forward computes them."""
    x = net.maxpool(net.relu(net.bn1(net.conv1(x))))
    low = net.layer1(x)
    mid = net.layer3(net.layer2(low))
    return low, mid, net.layer4(mid)


@pytest.mark.parametrize(
    ("name", "dilate"),
    [("deeplabv2_r101", [False, True, True]), ("deeplabv3plus_r101", [False, False, True])],
)
def test_torchvision_resnet101_file_gives_torchvision_features(
    tmp_path: Path, name: str, dilate: list[bool]
) -> None:
    """A randomly initialised torchvision resnet101 saved to a file, loaded by `pretrained`:
    our backbone's features are torchvision's on the same input, bit for bit (and to float
    precision with frozen BatchNorm)."""
    torch.manual_seed(1)
    net = torchvision.models.resnet101(replace_stride_with_dilation=dilate).eval()
    with torch.no_grad():  # BatchNorm statistics that are not the identity
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
    path = tmp_path / "resnet101-random.pth"
    torch.save(net.state_dict(), path)
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        want = _torchvision_features(net, x)
        got = build_model(name, C, pretrained=path).eval().backbone(x)
        frozen = build_model(name, C, pretrained=path, frozen_bn=True).train().backbone(x)
    for w, g, f in zip(want, got, frozen, strict=True):
        assert torch.equal(g, w)
        # random weights grow the maps to ~1e6; frozen BN rounds differently: 1e-5 of that
        assert (f - w).abs().max() <= 1e-5 * w.abs().max()
    assert got.mid.shape[-2:] == ((8, 12) if name == "deeplabv2_r101" else (4, 6))
