"""The network of a DDP run: this rank's rows of the global batch, everyone's outputs.

See ``trainer/distributed/run.py`` for why N processes then compute what one process computes.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from trainer.nets.output import SegOutput


class _GatherRows(torch.autograd.Function):
    """(n, ...) per rank -> (N * n, ...) rank-major; backward: all-reduce, keep own rows."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        return grad.chunk(dist.get_world_size())[dist.get_rank()]


class GatheredModel(nn.Module):
    """Runs ``module`` (DDP-wrapped) on this rank's rows of a global batch (N, 3, H, W) and
    returns the ``SegOutput`` of the whole global batch, rows in their original order.

    In training N must be a multiple of the world size; in evaluation the batch is padded.
    """

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> SegOutput:
        world, rank, n = dist.get_world_size(), dist.get_rank(), x.shape[0]
        pad = -n % world
        if pad and self.training and torch.is_grad_enabled():
            raise ValueError(
                f"a global batch of {n} images does not split over {world} "
                "ranks: make batch_source + batch_target a multiple of it"
            )
        if pad:
            x = torch.cat([x, x[-1:].expand(pad, *x.shape[1:])])
        rows = torch.arange(n + pad, device=x.device).view(-1, world).t()
        out = self.module(x[rows[rank]])
        # every output enters the graph, so DDP sees a gradient for every parameter even when
        # the loss ignores the embedding (no contrastive loss): a zero, adding 0.0 exactly
        main = out.main + 0.0 * out.embedding.sum()
        inverse = torch.argsort(rows.flatten())
        gathered = [_GatherRows.apply(t)[inverse][:n] for t in (main, out.aux, out.embedding)]
        return SegOutput(*gathered)


def wrap(model: nn.Module, device: torch.device) -> GatheredModel:
    """DDP (with SyncBatchNorm on CUDA) inside a ``GatheredModel``."""
    if device.type == "cuda" and dist.get_world_size() > 1:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ids = [device.index] if device.type == "cuda" else None
    return GatheredModel(DistributedDataParallel(model, device_ids=ids))


def unwrap(model: nn.Module) -> nn.Module:
    """The plain ``SegModel`` under ``GatheredModel`` / DDP."""
    while isinstance(model, GatheredModel | DistributedDataParallel):
        model = model.module
    return model
