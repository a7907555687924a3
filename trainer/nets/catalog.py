"""The networks by name, without torch: what ``model = NAME`` may say, and for the timm
encoders which timm model each takes and where its weights come from. The ``adamcu``
parser (``gpu-bench --model``) reads it without importing torch; ``trainer/nets/model.py``
builds them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class EncoderSpec:
    """A timm encoder with the all-MLP head (``trainer/nets/encoders.py``)."""

    arch: str  # timm model name
    head_channels: int  # the MLP head's width (SegFormer: 256 for B0, 768 for B1-B5)
    out_indices: tuple[int, ...] = (0, 1, 2, 3)  # stages, or for a ViT the blocks (0-based)
    kwargs: dict[str, Any] = field(default_factory=dict)  # more timm.create_model arguments
    hub: str = ""  # its ImageNet (DINOv2: LVD-142M) weights on the Hugging Face hub


# a ViT takes any input size: position embeddings interpolated, the input padded to 14k
_VIT = {"dynamic_img_size": True, "dynamic_img_pad": True}
_VIT_BLOCKS = (2, 5, 8, 11)  # four of ViT-S/B's 12 blocks, spread over the depth
ENCODERS: dict[str, EncoderSpec] = {
    "convnext_atto_mlp": EncoderSpec("convnext_atto", 256, hub="timm/convnext_atto.d2_in1k"),
    "convnext_tiny_mlp": EncoderSpec("convnext_tiny", 768, hub="timm/convnext_tiny.fb_in22k"),
    "pvt_v2_b0_mlp": EncoderSpec("pvt_v2_b0", 256, hub="timm/pvt_v2_b0.in1k"),
    "pvt_v2_b2_mlp": EncoderSpec("pvt_v2_b2", 768, hub="timm/pvt_v2_b2.in1k"),
    "dinov2_s14_mlp": EncoderSpec(
        "vit_small_patch14_dinov2", 256, _VIT_BLOCKS, _VIT, "timm/vit_small_patch14_dinov2.lvd142m"
    ),
    "dinov2_b14_mlp": EncoderSpec(
        "vit_base_patch14_dinov2", 768, _VIT_BLOCKS, _VIT, "timm/vit_base_patch14_dinov2.lvd142m"
    ),
}
RESNET_MODELS = ("deeplabv2_r101", "deeplabv3plus_r101")
MODEL_NAMES = ("small", *RESNET_MODELS, *ENCODERS)
