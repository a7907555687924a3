"""The adaptation step's one forward pass: source and target rows together, dropout per row.

Eq. 1 scores the target rows of the training forward. With ``score_dropout=False`` (the
default) the dropout layers pass the target rows through unchanged, as in evaluation, so the
score (and the aux head's KL term above all) carries no dropout noise, while the source rows
keep their dropout. No second forward is needed: a dropout layer in evaluation is the identity.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from trainer.nets.output import SegOutput


def upsample(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(N,C,h,w) -> (N,C,H,W) bilinear, as the field evaluates."""
    if tuple(logits.shape[-2:]) == tuple(size):
        return logits
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)


@contextmanager
def dropout_only_before(model: nn.Module, rows: int) -> Iterator[None]:
    """Within the block, every dropout layer of ``model`` drops only in batch rows ``[0, rows)``;
    rows ``rows:`` leave it as they came in (what the layer does in evaluation)."""

    def keep_rows(_module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor):
        if output.dim() == 0 or output.shape[0] <= rows:
            return output
        return torch.cat([output[:rows], inputs[0][rows:]])

    layers = [
        m for m in model.modules() if isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0
    ]
    inplace = [m.inplace for m in layers]
    for m in layers:  # an in-place layer would overwrite the rows it must keep
        m.inplace = False
    handles = [m.register_forward_hook(keep_rows) for m in layers]
    try:
        yield
    finally:
        for h in handles:
            h.remove()
        for m, flag in zip(layers, inplace, strict=True):
            m.inplace = flag


def train_forward(
    model: nn.Module, x: torch.Tensor, dropout_rows: int, amp: bool
) -> tuple[SegOutput, torch.Tensor, torch.Tensor]:
    """The training forward of a source + target batch ``x`` (N, 3, H, W), dropout only in rows
    ``[0, dropout_rows)``, bf16 autocast when ``amp``. Returns the output and its main and aux
    logits upsampled to (N, C, H, W) float32."""
    model.train()
    with (
        torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp),
        dropout_only_before(model, dropout_rows),
    ):
        out = model(x)
    size = tuple(x.shape[-2:])
    return out, upsample(out.main.float(), size), upsample(out.aux.float(), size)


@cache
def maybe_compiled(fn: Callable[..., Any], on: bool) -> Callable[..., Any]:
    """``fn`` (a pure tensor function: no side effect) under ``torch.compile`` when ``on``; if
    compiling is unavailable or fails on a call, a warning and ``fn`` itself from then on."""
    if not on:
        return fn
    try:
        compiled = torch.compile(fn, dynamic=False)
    except Exception as exc:  # noqa: BLE001 (no compiler on this machine, an old torch)
        warnings.warn(f"torch.compile unavailable ({exc}); running eagerly", stacklevel=2)
        return fn
    current = [compiled]

    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return current[0](*args, **kwargs)
        except Exception as exc:  # noqa: BLE001
            if current[0] is fn:
                raise
            warnings.warn(f"torch.compile failed ({str(exc)[:200]}); running eagerly", stacklevel=2)
            current[0] = fn
            return fn(*args, **kwargs)

    return call
