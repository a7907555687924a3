"""What every network gives the step: logits, auxiliary logits and unit pixel embeddings
(:class:`SegOutput`), the projection head of the MCUs, and the one resize they share."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class SegOutput(NamedTuple):
    main: Tensor  # (N, C, h, w) logits at the output stride
    aux: Tensor  # (N, C, h, w) logits of the auxiliary head (earlier stage), resized to main
    embedding: Tensor  # (N, D, h, w) float32, unit L2 norm along dim 1


def resize(x: Tensor, size: tuple[int, int] | torch.Size) -> Tensor:
    """``x`` (N,C,h,w) bilinearly resized to ``size`` (itself when it has that size)."""
    if x.shape[-2:] == size:
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def projection_head(cin: int, hidden: int, embed_dim: int) -> nn.Module:
    """conv1x1-BN-ReLU-conv1x1 projection for pixel embeddings (contrastive losses)."""
    return nn.Sequential(
        nn.Conv2d(cin, hidden, 1, bias=False),
        nn.BatchNorm2d(hidden),
        nn.ReLU(inplace=True),
        nn.Conv2d(hidden, embed_dim, 1),
    )
