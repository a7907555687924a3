"""Modern encoders from timm (`features_only`) with a SegFormer-style all-MLP head.

Three families, each at a CPU size and a paper size (`trainer.nets.catalog.ENCODERS`):

- ConvNeXt (`convnext_atto`, `convnext_tiny`): a pure convolutional net, strides 4-32;
- PVTv2 (`pvt_v2_b0`, `pvt_v2_b2`): the hierarchical transformer of SegFormer's family
  (overlapping patch embeddings, spatial-reduction attention, a depthwise conv in the MLP;
  SegFormer's MiT is a PVTv2 variant), strides 4-32. We take timm's rather than
  `transformers`' SegFormer: timm is needed for the other two anyway, its `features_only`
  gives the four stages as maps with one call, and its hub names (`hf-hub:timm/...`) and
  state-dict files load the same way for all three;
- DINOv2 ViT (`vit_small_patch14_dinov2`, `vit_base_patch14_dinov2`): four blocks spread
  over the depth (0-based 2, 5, 8, 11), each reshaped to a map at stride 14 (the input is
  padded to a multiple of 14; position embeddings are interpolated to the input size).

The head (our choice for all three, SegFormer's "all-MLP" decoder): a 1x1 conv per level to
`channels`, all resized to the first level, concatenated, fused by 1x1 conv-BN-ReLU, dropout
0.1, a 1x1 classifier; its fused map feeds the projection head (the MCUs' embeddings). The
auxiliary head for Eq. 1's KL is an FCN head on the penultimate level (`Pyramid.mid`, as
layer3 for ResNet, footnote 1). No stochastic depth (`drop_path_rate` 0): the adaptation
forward drops only in source rows (`trainer/nets/forward.py`), which it can do for dropout
layers, not for timm's DropPath.

Weights: `pretrained = PATH` loads a timm state dict file of the whole classification model
(`torch.save(timm.create_model("convnext_tiny", pretrained=True).state_dict(), PATH)`; the
classifier is dropped); `pretrained = "hf-hub:timm/convnext_tiny.fb_in22k"` downloads from the
Hugging Face hub when online. Without either, the encoder is randomly initialised.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from trainer.nets.backbones import check_state_dict, read_state_dict
from trainer.nets.catalog import EncoderSpec
from trainer.nets.output import resize

HUB_PREFIX = "hf-hub:"


class Pyramid(NamedTuple):
    """The encoder's maps, first (finest) to last; `mid` is the penultimate one."""

    levels: tuple[Tensor, ...]

    @property
    def mid(self) -> Tensor:
        return self.levels[-2]


class TimmEncoder(nn.Module):
    """A timm `features_only` network whose forward gives a `Pyramid`. The timm network is
    `self.net`: checkpoint keys read `backbone.net.<timm feature-net key>`."""

    def __init__(self, spec: EncoderSpec, pretrained: str | Path | None = None) -> None:
        super().__init__()
        import timm  # here, not at the top: importing the trainer need not import timm

        self.net = timm.create_model(
            spec.arch,
            features_only=True,
            out_indices=spec.out_indices,
            drop_path_rate=0.0,
            **_weights(pretrained),
            **spec.kwargs,
        )
        self.channels = tuple(self.net.feature_info.channels())

    def forward(self, x: Tensor) -> Pyramid:
        return Pyramid(tuple(self.net(x)))


def _weights(pretrained: str | Path | None) -> dict[str, Any]:
    """timm's arguments that load `pretrained`: a hub name, a local file, or nothing."""
    if pretrained is None:
        return {"pretrained": False}
    text = str(pretrained)
    if text.startswith(HUB_PREFIX):
        hub_id = text.removeprefix(HUB_PREFIX)
        return {"pretrained": True, "pretrained_cfg_overlay": {"hf_hub_id": hub_id}}
    return {"pretrained": True, "pretrained_cfg_overlay": {"file": str(pretrained)}}


def timm_encoder(spec: EncoderSpec, pretrained: str | Path | None = None) -> TimmEncoder:
    """`TimmEncoder(spec, pretrained)`; a local file is checked first against timm's whole
    model (its classifier aside): `PretrainedWeightsError` lists what does not fit. timm itself
    loads a features-only model leniently, so a wrong file would leave it random in silence."""
    if pretrained is not None and not str(pretrained).startswith(HUB_PREFIX):
        if not Path(pretrained).is_file():
            raise FileNotFoundError(
                f"pretrained weights file not found: {pretrained} (or give a hub name, e.g. "
                f"'{HUB_PREFIX}{spec.hub}')"
            )
        check_timm_file(spec, pretrained)
    return TimmEncoder(spec, pretrained)


def check_timm_file(spec: EncoderSpec, path: str | Path) -> None:
    """`PretrainedWeightsError` unless file ``path`` holds the weights of timm's ``spec.arch``
    (after timm's own conversion of the model's original checkpoints, `checkpoint_filter_fn`)."""
    import timm
    from timm.models import get_pretrained_cfg

    expected_what = f"the state dict of timm.create_model({spec.arch!r})"
    state = read_state_dict(path, expected_what)
    with torch.device("meta"):  # shapes only, no memory
        full = timm.create_model(spec.arch, **spec.kwargs)
    module = sys.modules[timm.models.model_entrypoint(spec.arch).__module__]
    convert = getattr(module, "checkpoint_filter_fn", None)
    if convert is not None:
        state = convert(state, full)
    classifier = get_pretrained_cfg(spec.arch).classifier or ()
    heads = (classifier,) if isinstance(classifier, str) else tuple(classifier)

    def kept(key: str) -> bool:
        return not any(key.startswith(head + ".") for head in heads)

    check_state_dict(
        {k: v for k, v in state.items() if kept(k)},
        {k: v for k, v in full.state_dict().items() if kept(k)},
        path,
        f"Expected {expected_what} (saved from timm, the classifier may be left in).",
    )


class MLPHead(nn.Module):
    """SegFormer's all-MLP decoder over every level: main logits and the fused features."""

    def __init__(self, in_channels: tuple[int, ...], channels: int, num_classes: int) -> None:
        super().__init__()
        self.linears = nn.ModuleList(nn.Conv2d(c, channels, 1) for c in in_channels)
        self.fuse = nn.Sequential(
            nn.Conv2d(channels * len(in_channels), channels, 1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
        )
        self.dropout = nn.Dropout2d(0.1)
        self.classifier = nn.Conv2d(channels, num_classes, 1)
        self.out_channels = channels

    def forward(self, feats: Pyramid) -> tuple[Tensor, Tensor]:
        size = feats.levels[0].shape[-2:]
        maps = [resize(lin(f), size) for lin, f in zip(self.linears, feats.levels, strict=True)]
        x = self.fuse(torch.cat(maps, dim=1))
        return self.classifier(self.dropout(x)), x
