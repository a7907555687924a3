"""The timm encoders (trainer/nets/encoders.py): shapes, weights from a file, bf16, no download."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch

from trainer.nets.backbones import PretrainedWeightsError
from trainer.nets.catalog import ENCODERS
from trainer.nets.encoders import Pyramid
from trainer.nets.model import build_model

C = 5
SMALL = ("convnext_atto_mlp", "pvt_v2_b0_mlp", "dinov2_s14_mlp")


def _timm(name: str) -> torch.nn.Module:
    spec = ENCODERS[name]
    return timm.create_model(spec.arch, **spec.kwargs).eval()


@pytest.mark.parametrize("name", SMALL)
def test_shapes_aux_on_the_penultimate_level_and_bf16(name: str) -> None:
    torch.manual_seed(0)
    model = build_model(name, C, embed_dim=8).eval()
    x = torch.randn(2, 3, 60, 100)  # not a multiple of 14 nor of 32
    with torch.no_grad():
        feats = model.backbone(x)
        out = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            half = model(x)
    assert isinstance(feats, Pyramid) and len(feats.levels) == 4
    assert model.aux_head[0][0].in_channels == feats.levels[-2].shape[1] == feats.mid.shape[1]
    stride = 14 if name.startswith("dinov2") else 4
    size = (-(-60 // stride), -(-100 // stride))
    assert out.main.shape == out.aux.shape == (2, C, *size)
    assert out.embedding.shape == (2, 8, *size) and out.embedding.dtype == torch.float32
    norms = out.embedding.norm(dim=1)
    torch.testing.assert_close(norms, torch.ones_like(norms), atol=1e-4, rtol=0)
    scale = float(out.main.abs().max())
    assert torch.isfinite(half.main.float()).all()
    assert torch.allclose(half.main.float(), out.main, atol=0.1 * scale)


@pytest.mark.parametrize("name", SMALL)
def test_a_timm_state_dict_file_loads_into_the_encoder(tmp_path: Path, name: str) -> None:
    """timm's whole classification model, randomly initialised and saved: our encoder's last
    level is that model's map of the same stage or block, bit for bit."""
    torch.manual_seed(1)
    net = _timm(name)
    path = tmp_path / "weights.pth"
    torch.save(net.state_dict(), path)
    model = build_model(name, C, pretrained=path).eval()
    x = torch.randn(1, 3, 56, 84)
    last = ENCODERS[name].out_indices[-1]
    with torch.no_grad():
        want = net.forward_intermediates(x, indices=[last], intermediates_only=True)[-1]
        got = model.backbone(x).levels[-1]
        fresh = build_model(name, C).eval().backbone(x).levels[-1]
    assert torch.equal(got, want)
    assert not torch.equal(fresh, want)


def test_a_file_of_another_network_is_refused(tmp_path: Path) -> None:
    torch.save(_timm("convnext_atto_mlp").state_dict(), tmp_path / "convnext.pth")
    with pytest.raises(PretrainedWeightsError, match="pvt_v2_b0") as err:
        build_model("pvt_v2_b0_mlp", C, pretrained=tmp_path / "convnext.pth")
    assert "missing keys" in str(err.value) and "unexpected keys" in str(err.value)
    torch.save({"stem.0.weight": torch.zeros(3)}, tmp_path / "bare.pth")
    with pytest.raises(PretrainedWeightsError, match="missing keys"):
        build_model("convnext_atto_mlp", C, pretrained=tmp_path / "bare.pth")
    with pytest.raises(FileNotFoundError, match="hf-hub:timm/convnext_atto"):
        build_model("convnext_atto_mlp", C, pretrained=tmp_path / "absent.pth")
    with pytest.raises(ValueError, match="hub name is for the timm models"):
        build_model("deeplabv2_r101", C, pretrained="hf-hub:timm/resnet101.a1h_in1k")
