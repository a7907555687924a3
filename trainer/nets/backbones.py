"""Backbones: torchvision's ResNet-101 (dilated, read by its feature extractor), a small
residual net for the CPU benchmark.

Both return `Features(low, mid, high)`: `low` at stride 4 (decoder input), `mid` from the
penultimate stage (the auxiliary head's input: conv4 = `layer3` for ResNet, footnote 1 of the
paper) and `high` from the last stage.

ImageNet weights come only from a local file (`load_pretrained`): nothing is downloaded. Online,
export torchvision's weights once with
`torch.save(torchvision.models.resnet101(weights="IMAGENET1K_V1").state_dict(), "r101.pth")`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

import torch
import torchvision.models as tv_models
import torchvision.ops as tv_ops
from torch import Tensor, nn
from torchvision.models._utils import IntermediateLayerGetter


class Features(NamedTuple):
    low: Tensor  # (N, C_low, H/4, W/4)
    mid: Tensor  # (N, C_mid, h, w) penultimate stage
    high: Tensor  # (N, C_high, h, w) last stage


class PretrainedWeightsError(ValueError):
    """A pretrained weights file does not match the backbone."""


class FrozenBatchNorm2d(tv_ops.FrozenBatchNorm2d):
    """torchvision's `FrozenBatchNorm2d` (statistics and affine values as buffers, the keys of
    `nn.BatchNorm2d`, `num_batches_tracked` dropped on load) whose output keeps its input's
    dtype: under bf16 autocast torchvision's would turn every activation after it into
    float32 (its buffers are float32), doubling what the backward keeps."""

    def forward(self, x: Tensor) -> Tensor:
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        shift = self.bias - self.running_mean * scale
        return x * scale.view(1, -1, 1, 1).to(x.dtype) + shift.view(1, -1, 1, 1).to(x.dtype)


def freeze_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every `nn.BatchNorm2d` under `module` by a `FrozenBatchNorm2d` with its values."""
    if isinstance(module, nn.BatchNorm2d):
        frozen = FrozenBatchNorm2d(module.num_features, module.eps)
        with torch.no_grad():
            if module.affine:
                frozen.weight.copy_(module.weight)
                frozen.bias.copy_(module.bias)
            if module.running_mean is not None:
                frozen.running_mean.copy_(module.running_mean)
                frozen.running_var.copy_(module.running_var)
        return frozen
    for name, child in module.named_children():
        setattr(module, name, freeze_batchnorm(child))
    return module


def _conv3x3(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride, padding=dilation, dilation=dilation, bias=False)


def _downsample(cin: int, cout: int, stride: int) -> nn.Module | None:
    if stride == 1 and cin == cout:
        return None
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (ResNet-18/34 style)."""

    def __init__(self, cin: int, cout: int, stride: int = 1, dilation: int = 1) -> None:
        super().__init__()
        self.conv1 = _conv3x3(cin, cout, stride, dilation)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = _conv3x3(cout, cout, 1, dilation)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(cin, cout, stride)

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


RESNETS = ("resnet50", "resnet101")
_DILATE = {8: [False, True, True], 16: [False, False, True]}  # layer2, layer3, layer4


class ResNetFeatures(IntermediateLayerGetter):
    """torchvision's ResNet (`torchvision.models.resnet50/101`, bottleneck "v1.5") without its
    classifier, read by torchvision's `IntermediateLayerGetter` at layer1 (`low`), layer3 (`mid`:
    conv4, footnote 1 of the paper) and layer4 (`high`). The keys are torchvision's
    (`conv1.weight`, `layer3.22.conv3.weight`): its ImageNet file loads as it is.

    output_stride 8 dilates layer3 and layer4 (`replace_stride_with_dilation`), 16 layer4 only;
    as torchvision does it, a dilated stage's first block keeps the previous dilation.
    """

    def __init__(self, arch: str = "resnet101", output_stride: int = 8) -> None:
        if arch not in RESNETS:
            raise ValueError(f"unknown ResNet {arch!r}; choose one of {', '.join(RESNETS)}")
        if output_stride not in _DILATE:
            raise ValueError(f"output_stride must be 8 or 16, got {output_stride}")
        net = getattr(tv_models, arch)(
            weights=None, replace_stride_with_dilation=_DILATE[output_stride]
        )
        super().__init__(net, {"layer1": "low", "layer3": "mid", "layer4": "high"})
        self.channels = (256, 1024, 2048)  # low, mid, high

    def forward(self, x: Tensor) -> Features:  # type: ignore[override]
        return Features(**super().forward(x))


def resnet101(output_stride: int = 8) -> ResNetFeatures:
    """torchvision's ResNet-101 at output stride 8 (layer3 dilation 2, layer4 4) or 16."""
    return ResNetFeatures("resnet101", output_stride)


class SmallBackbone(nn.Module):
    """Residual net for CPU runs: stem to stride 2, layer1 stride 4, layer2/layer3 stride 8.

    layer3 is dilated (2 then 4) for context at no spatial cost; `mid` is layer2.
    """

    def __init__(self, widths: tuple[int, int, int, int] = (32, 48, 96, 112)) -> None:
        super().__init__()
        w0, w1, w2, w3 = widths
        self.stem = nn.Sequential(
            nn.Conv2d(3, w0, 3, 2, 1, bias=False),
            nn.BatchNorm2d(w0),
            nn.ReLU(inplace=True),
            _conv3x3(w0, w0),
            nn.BatchNorm2d(w0),
            nn.ReLU(inplace=True),
        )
        self.layer1 = nn.Sequential(BasicBlock(w0, w1, 2), BasicBlock(w1, w1))
        self.layer2 = nn.Sequential(BasicBlock(w1, w2, 2), BasicBlock(w2, w2))
        self.layer3 = nn.Sequential(BasicBlock(w2, w3, 1, 2), BasicBlock(w3, w3, 1, 4))
        self.channels = (w1, w2, w3)  # low, mid, high
        _init_weights(self)

    def forward(self, x: Tensor) -> Features:
        low = self.layer1(self.stem(x))
        mid = self.layer2(low)
        return Features(low, mid, self.layer3(mid))


def _init_weights(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def _key_list(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def read_state_dict(path: str | Path, expected: str) -> dict[str, Tensor]:
    """The state dict of tensors in file ``path``; ``expected`` says what it should hold."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pretrained weights file not found: {path}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise PretrainedWeightsError(f"{path} is not a state dict of tensors; expected {expected}")
    return dict(state)


def check_state_dict(
    state: Mapping[str, Tensor], expected: Mapping[str, Tensor], path: str | Path, hint: str
) -> None:
    """`PretrainedWeightsError` listing the missing, unexpected and wrongly shaped keys of
    ``state`` against ``expected`` (`num_batches_tracked` aside); ``hint`` ends the message."""
    skip = "num_batches_tracked"
    missing = sorted(k for k in expected if k not in state and not k.endswith(skip))
    unexpected = sorted(k for k in state if k not in expected and not k.endswith(skip))
    mismatched = sorted(
        f"{k} {tuple(state[k].shape)} != {tuple(expected[k].shape)}"
        for k in state
        if k in expected and state[k].shape != expected[k].shape
    )
    problems = [
        f"{len(keys)} {what}: {_key_list(keys)}"
        for what, keys in (
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            ("shape mismatches", mismatched),
        )
        if keys
    ]
    if problems:
        raise PretrainedWeightsError(
            f"pretrained weights {path} do not match the backbone; {'; '.join(problems)}. {hint}"
        )


def load_pretrained(backbone: nn.Module, path: str | Path) -> None:
    """Load a torchvision-format ImageNet state dict (`resnet101-*.pth`) into `backbone`.

    Keys are checked strictly: `fc.*` (the ImageNet classifier) is ignored, any other missing,
    unexpected or wrongly shaped key raises `PretrainedWeightsError` listing them.
    """
    state = read_state_dict(
        path,
        "a torchvision resnet101 state dict (keys conv1.weight, bn1.weight, "
        "layer1.0.conv1.weight, ...)",
    )
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    check_state_dict(
        state,
        backbone.state_dict(),
        path,
        "Expected torchvision resnet101 key names (conv1.weight, layer1.0.conv1.weight).",
    )
    backbone.load_state_dict(state, strict=False)
