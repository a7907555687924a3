"""Segmentation models: main logits, auxiliary logits (footnote 1) and pixel embeddings.

`build_model(name, num_classes)` returns a `SegModel` whose forward gives a `SegOutput`:

- "small": a ~0.9 M parameter residual net for the bundled 64x128 benchmark on a CPU;
  output stride 4 via a light DeepLab-v3+-style decoder, ASPP-lite context at stride 8.
- "deeplabv2_r101": DeepLab v2 as AdaptSegNet/ADVENT's DeeplabMulti: ResNet-101 at output
  stride 8, main ASPP-sum classifier on layer4, auxiliary one (same form) on layer3 (conv4).
- "deeplabv3plus_r101": DeepLab v3+: ResNet-101 at output stride 16, ASPP, decoder with
  layer1 features (main output at stride 4); FCN auxiliary head on layer3.
  Both take torchvision's ResNet-101 (`trainer/nets/backbones.py`).
- the timm encoders of `trainer.nets.catalog.ENCODERS` (ConvNeXt, PVTv2, DINOv2 ViT) with a
  SegFormer all-MLP head, an FCN auxiliary head on the penultimate level and the projection
  head on the MLP head's fused map (`trainer/nets/encoders.py`).

Backbone vs head parameters: everything under `model.backbone` is backbone; `head`,
`aux_head` and `projection` are heads (10x learning rate in `param_groups`).
`frozen_bn=True` swaps the backbone's BatchNorm2d for `FrozenBatchNorm2d` (statistics and
affine values as buffers), so neither `train()` nor an optimizer can change them; head
BatchNorms stay trainable.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trainer.nets.backbones import (
    Features,
    SmallBackbone,
    freeze_batchnorm,
    load_pretrained,
    resnet101,
)
from trainer.nets.catalog import ENCODERS, MODEL_NAMES, RESNET_MODELS, EncoderSpec
from trainer.nets.encoders import HUB_PREFIX, MLPHead, timm_encoder
from trainer.nets.output import SegOutput, projection_head, resize


def conv_bn_relu(
    cin: int, cout: int, k: int = 3, dilation: int = 1, sep: bool = False
) -> nn.Module:
    """k x k conv (depthwise-separable when `sep`) + BN + ReLU, spatial size kept."""
    pad = dilation * (k // 2)
    if sep and k > 1:
        convs = [
            nn.Conv2d(cin, cin, k, padding=pad, dilation=dilation, groups=cin, bias=False),
            nn.Conv2d(cin, cout, 1, bias=False),
        ]
    else:
        convs = [nn.Conv2d(cin, cout, k, padding=pad, dilation=dilation, bias=False)]
    return nn.Sequential(*convs, nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class ASPPSum(nn.Module):
    """DeepLab v2 classifier: dilated 3x3 convs (rates 6, 12, 18, 24) straight to logits, summed."""

    def __init__(self, cin: int, num_classes: int, rates: tuple[int, ...] = (6, 12, 18, 24)):
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Conv2d(cin, num_classes, 3, padding=r, dilation=r, bias=True) for r in rates
        )
        for conv in self.branches:
            nn.init.normal_(conv.weight, 0.0, 0.01)
            nn.init.zeros_(conv.bias)

    def forward(self, x: Tensor) -> Tensor:
        out = self.branches[0](x)
        for branch in self.branches[1:]:
            out = out + branch(x)
        return out


class ASPP(nn.Module):
    """DeepLab v3 ASPP: 1x1, atrous 3x3 branches and image pooling, concatenated, projected.

    The pooling branch has no BatchNorm (a 1x1 map cannot be normalised at batch size 1).
    """

    def __init__(
        self, cin: int, cout: int, rates: tuple[int, ...], sep: bool = False, dropout: float = 0.1
    ) -> None:
        super().__init__()
        branches = [conv_bn_relu(cin, cout, 1)]
        branches += [conv_bn_relu(cin, cout, 3, r, sep) for r in rates]
        self.branches = nn.ModuleList(branches)
        self.pool = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(cin, cout, 1), nn.ReLU(inplace=True)
        )
        self.project = nn.Sequential(
            conv_bn_relu(cout * (len(rates) + 2), cout, 1), nn.Dropout2d(dropout)
        )

    def forward(self, x: Tensor) -> Tensor:
        outs = [branch(x) for branch in self.branches]
        outs.append(self.pool(x).expand(-1, -1, *x.shape[-2:]))
        return self.project(torch.cat(outs, dim=1))


class DeepLabV2Head(nn.Module):
    """Main head of DeepLab v2: ASPP-sum on the last stage; features = the last stage."""

    def __init__(self, cin: int, num_classes: int) -> None:
        super().__init__()
        self.classifier = ASPPSum(cin, num_classes)
        self.out_channels = cin

    def forward(self, feats: Features) -> tuple[Tensor, Tensor]:
        return self.classifier(feats.high), feats.high


class DecoderHead(nn.Module):
    """DeepLab v3+ decoder: context(high) upsampled to `low`, concat with reduced `low`, fused."""

    def __init__(
        self,
        context: nn.Module,
        context_channels: int,
        low: tuple[int, int],
        channels: int,
        num_classes: int,
        fuse_convs: int = 2,
        sep: bool = False,
    ) -> None:
        super().__init__()
        self.context = context
        self.reduce = conv_bn_relu(low[0], low[1], 1)
        fuse = [conv_bn_relu(context_channels + low[1], channels, 3, sep=sep)]
        fuse += [conv_bn_relu(channels, channels, 3, sep=sep) for _ in range(fuse_convs - 1)]
        self.fuse = nn.Sequential(*fuse)
        self.classifier = nn.Conv2d(channels, num_classes, 1)
        self.out_channels = channels

    def forward(self, feats: Features) -> tuple[Tensor, Tensor]:
        low = self.reduce(feats.low)
        context = resize(self.context(feats.high), low.shape[-2:])
        x = self.fuse(torch.cat([context, low], dim=1))
        return self.classifier(x), x


def fcn_head(cin: int, channels: int, num_classes: int, sep: bool = False) -> nn.Module:
    """FCN auxiliary head: 3x3 conv-BN-ReLU, dropout, 1x1 classifier."""
    return nn.Sequential(
        conv_bn_relu(cin, channels, 3, sep=sep),
        nn.Dropout2d(0.1),
        nn.Conv2d(channels, num_classes, 1),
    )


class SegModel(nn.Module):
    """backbone -> (head: main logits + features, aux_head on `mid`, projection on features)."""

    def __init__(
        self, backbone: nn.Module, head: nn.Module, aux_head: nn.Module, projection: nn.Module
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.aux_head = aux_head
        self.projection = projection

    def forward(self, x: Tensor) -> SegOutput:
        """x (N, 3, H, W) normalised image -> SegOutput at the model's output stride."""
        feats: Features = self.backbone(x)
        main, features = self.head(feats)
        aux = resize(self.aux_head(feats.mid), main.shape[-2:])
        embedding = self.projection(features)
        embedding = F.normalize(resize(embedding, main.shape[-2:]).float(), dim=1)
        return SegOutput(main, aux, embedding)


def _build_small(num_classes: int, embed_dim: int) -> SegModel:
    backbone = SmallBackbone((32, 48, 96, 112))
    c_low, c_mid, c_high = backbone.channels
    context = ASPP(c_high, 80, rates=(2, 4, 6), sep=True, dropout=0.0)
    head = DecoderHead(context, 80, (c_low, 32), 96, num_classes, fuse_convs=1, sep=True)
    aux = fcn_head(c_mid, 64, num_classes, sep=True)
    return SegModel(backbone, head, aux, projection_head(96, 96, embed_dim))


def _build_v2(num_classes: int, embed_dim: int) -> SegModel:
    backbone = resnet101(output_stride=8)
    _, c_mid, c_high = backbone.channels
    head = DeepLabV2Head(c_high, num_classes)
    return SegModel(
        backbone, head, ASPPSum(c_mid, num_classes), projection_head(c_high, 512, embed_dim)
    )


def _build_v3plus(num_classes: int, embed_dim: int) -> SegModel:
    backbone = resnet101(output_stride=16)
    c_low, c_mid, c_high = backbone.channels
    context = ASPP(c_high, 256, rates=(6, 12, 18), dropout=0.1)
    head = DecoderHead(context, 256, (c_low, 48), 256, num_classes, fuse_convs=2)
    aux = fcn_head(c_mid, 256, num_classes)
    return SegModel(backbone, head, aux, projection_head(256, 256, embed_dim))


def _build_timm(
    spec: EncoderSpec, num_classes: int, embed_dim: int, pretrained: str | Path | None
) -> SegModel:
    """A timm encoder, the MLP head, an FCN aux head on the penultimate level (256 wide, as
    v3+'s) and the projection head (hidden 256) on the head's fused map: widths our choice."""
    backbone = timm_encoder(spec, pretrained)
    head = MLPHead(backbone.channels, spec.head_channels, num_classes)
    aux = fcn_head(backbone.channels[-2], 256, num_classes)
    return SegModel(backbone, head, aux, projection_head(spec.head_channels, 256, embed_dim))


def build_model(
    name: str,
    num_classes: int,
    *,
    embed_dim: int = 64,
    pretrained: str | Path | None = None,
    frozen_bn: bool = False,
) -> SegModel:
    """Build a segmentation model by name (see `MODEL_NAMES`), or the user's network for
    ``"package.module:function"`` (`trainer.nets.usermodel`: the protocol and the logits adapter).

    pretrained: for the ResNet-101 models a local torchvision ImageNet state dict, keys
    checked strictly (`PretrainedWeightsError`); for the timm encoders a local timm state dict
    or a hub name ``hf-hub:timm/...`` (downloaded). frozen_bn: backbone BatchNorms become
    `FrozenBatchNorm2d` (after loading weights; the timm encoders have none but ConvNeXt's
    and PVTv2's LayerNorms, which stay trainable).
    """
    if name in ENCODERS:  # timm loads the weights as it builds the encoder
        model = _build_timm(ENCODERS[name], num_classes, embed_dim, pretrained)
    else:
        if pretrained is not None:
            _check_resnet_weights(name, pretrained)
        model = _build_named(name, num_classes, embed_dim)
        if pretrained is not None:
            load_pretrained(model.backbone, pretrained)
    if frozen_bn:
        freeze_batchnorm(model.backbone)
    return model


def _build_named(name: str, num_classes: int, embed_dim: int) -> nn.Module:
    """The small net, a DeepLab, or the user's ``package.module:function``."""
    builders = {
        "small": _build_small,
        "deeplabv2_r101": _build_v2,
        "deeplabv3plus_r101": _build_v3plus,
    }
    if ":" in name:  # your own network, "package.module:function" (trainer/nets/usermodel.py)
        from trainer.nets.usermodel import build_user_model

        builders[name] = lambda c, d: build_user_model(name, c, d)
    if name not in builders:
        raise ValueError(
            f"unknown model {name!r}; choose one of {', '.join(MODEL_NAMES)} or give "
            "'package.module:function' (docs/data.md)"
        )
    return builders[name](num_classes, embed_dim)


def _check_resnet_weights(name: str, pretrained: str | Path) -> None:
    """ValueError unless ``name`` takes a torchvision ResNet-101 file ``pretrained``."""
    if name not in RESNET_MODELS:
        raise ValueError(
            "pretrained weights are only supported for the ResNet-101 and timm models "
            f"({', '.join(MODEL_NAMES[1:])})"
        )
    if str(pretrained).startswith(HUB_PREFIX):
        raise ValueError(
            f"{name}: a hub name is for the timm models; give a torchvision resnet101 state "
            "dict file (trainer/nets/backbones.py says how to save one)"
        )


def param_groups(
    model: nn.Module, lr: float, head_lr_mult: float = 10.0, weight_decay: float = 1e-4
) -> list[dict]:
    """SGD parameter groups: `backbone.*` at lr, all other (head) parameters at lr * head_lr_mult.

    Works through DDP (`module.`) and torch.compile (`_orig_mod.`) wrappers. Frozen parameters
    (requires_grad False) are left out; empty groups are dropped. Each group carries "name"
    and "lr_mult" for `set_lr`.
    """
    backbone, heads = [], []
    for name, p in model.named_parameters():
        parts = name.split(".")
        while parts[0] in ("module", "_orig_mod"):  # DDP / torch.compile wrappers
            parts = parts[1:]
        if p.requires_grad:
            (backbone if parts[0] == "backbone" else heads).append(p)
    groups = [
        {"name": "backbone", "params": backbone, "lr_mult": 1.0},
        {"name": "heads", "params": heads, "lr_mult": head_lr_mult},
    ]
    return [
        {**g, "lr": lr * g["lr_mult"], "weight_decay": weight_decay} for g in groups if g["params"]
    ]


def poly_lr(base_lr: float, iteration: int, max_iterations: int, power: float = 0.9) -> float:
    """base_lr * (1 - iteration / max_iterations) ** power, iteration clamped to [0, max]."""
    if max_iterations <= 0:
        raise ValueError("max_iterations must be positive")
    progress = min(max(iteration, 0), max_iterations) / max_iterations
    return base_lr * (1.0 - progress) ** power


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every group's learning rate to lr * group["lr_mult"] (1 when absent)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_mult", 1.0)
