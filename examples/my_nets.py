"""Two user networks for ``model = "examples.my_nets:FUNCTION"`` (docs/data.md, "Your own
network"). Run from the repository root with ``PYTHONPATH=.`` so that ``examples`` imports."""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn


def block(cin: int, cout: int, stride: int = 1) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class PlainSegNet(nn.Module):
    """A plain network that returns logits only: adamcu's adapter adds the aux and projection
    heads it needs."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(block(3, 32, 2), block(32, 64, 2), block(64, 64))
        self.classifier = nn.Conv2d(64, num_classes, 1)

    def forward(self, x):
        return self.classifier(self.features(x))


class ProtocolSegNet(PlainSegNet):
    """The full protocol: (main logits, aux logits, embeddings) from its own features."""

    def __init__(self, num_classes: int, embed_dim: int) -> None:
        super().__init__(num_classes)
        self.aux = nn.Conv2d(32, num_classes, 1)
        self.embed = nn.Conv2d(64, embed_dim, 1)

    def forward(self, x):
        low = self.features[:1](x)
        high = self.features[1:](low)
        aux = F.interpolate(self.aux(low), size=high.shape[-2:], mode="bilinear")
        return self.classifier(high), aux, self.embed(high)


def plain_segnet(num_classes: int) -> nn.Module:
    return PlainSegNet(num_classes)


def protocol_segnet(num_classes: int, embed_dim: int) -> nn.Module:
    return ProtocolSegNet(num_classes, embed_dim)
