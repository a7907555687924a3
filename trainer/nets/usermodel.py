"""Your own network in the loop: ``model = "package.module:function"`` in the config.

The protocol (docs/data.md): ``function(num_classes, embed_dim)`` (``embed_dim`` only if the
function takes it) returns an ``nn.Module`` whose ``forward(x)`` takes normalised images
(N, 3, H, W) and returns either

- ``(main, aux, embedding)``: main and auxiliary logits (N, C, h, w) and pixel embeddings
  (N, D, h', w'); aux and embedding are resized to main's size, embeddings L2-normalised; or
- a single tensor of logits (N, C, h, w): :class:`LogitsAdapter` adds what the method needs,
  an auxiliary head (1x1 conv over the logits, initialised to the identity) and a projection
  head (conv-BN-ReLU-conv) for the embeddings.

The user's network becomes ``model.backbone`` (learning rate ``lr``); the adapter's heads get
``lr * head_lr_mult``. One dry forward pass at build time tells the two kinds apart and checks
the shapes, so a network that breaks the protocol fails at once with a message.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trainer.nets.output import SegOutput, projection_head, resize

PROBE = (1, 3, 64, 64)


def load_function(spec: str) -> Callable[..., nn.Module]:
    """Import ``package.module:function``; ValueError naming the spec when it fails."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ValueError(f"model {spec!r}: expected 'package.module:function'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"model {spec!r}: cannot import {module_name!r} ({exc})") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ValueError(f"model {spec!r}: {module_name} has no function {attr!r}")
    return fn


class ProtocolModel(nn.Module):
    """A network that already returns (main, aux, embedding)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.backbone = net

    def forward(self, x: Tensor) -> SegOutput:
        main, aux, embedding = self.backbone(x)
        size = main.shape[-2:]
        return SegOutput(
            main, resize(aux, size), F.normalize(resize(embedding, size).float(), dim=1)
        )


class LogitsAdapter(nn.Module):
    """A logits-only network plus the auxiliary and projection heads the method needs."""

    def __init__(self, net: nn.Module, num_classes: int, embed_dim: int, hidden: int = 64) -> None:
        super().__init__()
        self.backbone = net
        self.aux_head = nn.Conv2d(num_classes, num_classes, 1)
        with torch.no_grad():
            self.aux_head.weight.copy_(torch.eye(num_classes)[:, :, None, None])
            self.aux_head.bias.zero_()
        self.projection = projection_head(num_classes, hidden, embed_dim)

    def forward(self, x: Tensor) -> SegOutput:
        main = self.backbone(x)
        embedding = F.normalize(self.projection(main).float(), dim=1)
        return SegOutput(main, self.aux_head(main), embedding)


def _check(spec: str, out: object, num_classes: int) -> bool:
    """True for a logits-only network, False for a protocol one; ValueError otherwise."""
    if isinstance(out, Tensor):
        outs, logits_only = [out], True
    elif (
        isinstance(out, tuple | list) and len(out) == 3 and all(isinstance(t, Tensor) for t in out)
    ):
        outs, logits_only = list(out[:2]), False
    else:
        raise ValueError(
            f"model {spec!r} must return logits or (main, aux, embedding) tensors, got "
            f"{type(out).__name__}"
        )
    for t in outs:
        if t.dim() != 4 or t.shape[1] != num_classes:
            raise ValueError(
                f"model {spec!r}: logits must be (N, {num_classes}, h, w), got {tuple(t.shape)}"
            )
    return logits_only


def build_user_model(spec: str, num_classes: int, embed_dim: int) -> nn.Module:
    """The network of ``spec`` wrapped to return a SegOutput (see the module docstring)."""
    fn = load_function(spec)
    params = inspect.signature(fn).parameters
    kwargs = {"embed_dim": embed_dim} if "embed_dim" in params else {}
    net = fn(num_classes, **kwargs)
    if not isinstance(net, nn.Module):
        raise ValueError(f"model {spec!r} returned {type(net).__name__}, not an nn.Module")
    was_training = net.training
    net.eval()
    with torch.no_grad():
        logits_only = _check(spec, net(torch.zeros(PROBE)), num_classes)
    net.train(was_training)
    return LogitsAdapter(net, num_classes, embed_dim) if logits_only else ProtocolModel(net)
