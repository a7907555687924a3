"""Several GPUs through torchrun (DDP): one ADA-MCU run with its global batch sharded.

    torchrun --nproc_per_node=4 -m trainer.distributed --config trainer/configs/<run>.toml

Every rank holds the data and draws the same global batch (``batch_source`` +
``batch_target`` images, same seeds). The design makes N processes compute what one process
computes on that global batch:

- ``GatheredModel`` (``trainer/distributed/wrap.py``) runs ``DistributedDataParallel(model)`` on
  this rank's rows (``r, r + N, ...``) of the global batch, then all-gathers the outputs at
  the output stride (main, aux, embedding: a few MB) with a differentiable gather. Every rank
  thus sees the outputs of the whole global batch, bitwise the same on every rank, and runs
  the unchanged ``trainer.loop.step.adaptation_step`` on them: scores, groups, selection, loss and
  DCCM are those of one process. Only the network (the costly part) is split.
- Gradients: the gather's backward sums dL/d(outputs) over ranks and keeps this rank's rows,
  i.e. N * dL/d(local outputs) (every rank computes the same L); DDP averages parameter
  gradients over the N ranks, giving exactly dL/d(theta) of one process.
- Queries: only rank 0 calls the oracle (``RankZeroOracle``); the pixels and answers are
  broadcast and every rank merges them into its copy of the label bank. The budget spent is
  read on rank 0 and broadcast (``RankZeroSpent``), so it is counted once (``adapt`` reads it
  once per iteration of the query window, on every rank together). The other ranks
  compute the same selection (to keep their random generators in step) and check that it
  equals rank 0's, which is authoritative.
- Checkpoints and result files are written by rank 0 only.

Caveats: train-mode BatchNorm (the heads; the backbone unless ``frozen_bn``) becomes
SyncBatchNorm on CUDA, whose statistics are those of the global batch; SyncBatchNorm does not
run on the CPU, so gloo-on-CPU runs keep per-rank statistics. Dropout (DeepLab v3+ heads)
draws its masks per rank. The global batch must split evenly over the ranks: 2 + 2 images
run on 1, 2 or 4 processes; for 8 GPUs raise ``batch_source``/``batch_target``.
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from trainer.config import TrainConfig, load_config
from trainer.constants import GROUP_CODES
from trainer.distributed.wrap import unwrap, wrap
from trainer.learning.labelbank import LabelBank
from trainer.loop.adapt import AdaptHooks, adapt, local_oracle
from trainer.loop.bundles import Ask, Oracle, Spent
from trainer.loop.checkpoint import data_classes, payload, save
from trainer.loop.train import Data, evaluate, load_data, pretrain
from trainer.strategies import configure

log = logging.getLogger("adamcu.distributed")


class RankZeroOracle:
    """An ``Ask`` that calls ``ask`` on rank 0 only and broadcasts its pixels and answers.

    ``comm``: the device collectives run on (CUDA for NCCL, CPU for gloo).
    """

    def __init__(self, ask: Ask | None, comm: torch.device) -> None:
        if dist.get_rank() == 0 and ask is None:
            raise ValueError("rank 0 needs an oracle")
        self.ask, self.comm = ask, comm

    def __call__(
        self,
        index: torch.Tensor,
        ys: torch.Tensor,
        xs: torch.Tensor,
        group: str,
        scores: torch.Tensor,
    ) -> torch.Tensor:
        rank = dist.get_rank()
        mine = torch.stack([index, ys, xs]).long().to(self.comm)
        count = torch.tensor([mine.shape[1]], device=self.comm)
        dist.broadcast(count, 0)
        coords = (
            mine if rank == 0 else torch.empty(3, int(count), dtype=torch.long, device=self.comm)
        )
        dist.broadcast(coords, 0)
        if not torch.equal(coords, mine):
            raise RuntimeError(
                f"rank {rank} selected other pixels than rank 0: the ranks' "
                "inputs or random generators diverged"
            )
        if rank == 0:
            classes = torch.as_tensor(self.ask(index, ys, xs, group, scores), dtype=torch.long)
            classes = classes.to(self.comm)
        else:
            classes = torch.empty(int(count), dtype=torch.long, device=self.comm)
        dist.broadcast(classes, 0)
        return classes.cpu()


class RankZeroSpent:
    """A ``Spent`` read on rank 0 (the server's budget, or rank 0's bank) and broadcast."""

    def __init__(self, spent: Spent, comm: torch.device) -> None:
        self.spent, self.comm = spent, comm

    def __call__(self) -> dict[str, int]:
        names = sorted(GROUP_CODES)
        values = self.spent() if dist.get_rank() == 0 else {}
        counts = torch.tensor([int(values.get(k, 0)) for k in names], device=self.comm)
        dist.broadcast(counts, 0)
        return dict(zip(names, counts.tolist(), strict=True))


def save_checkpoint(
    path: Path,
    cfg: TrainConfig,
    model: nn.Module,
    data: Data,
    bank: LabelBank,
    point: dict[str, Any],
) -> None:
    """Rank 0 only: the one checkpoint format (``trainer/loop/checkpoint.py``) with the label
    bank and the evaluation ``point``."""
    if dist.get_rank() != 0:
        return
    size = data.target.images.shape[-2:]
    classes = data_classes(data)
    save(path, payload(cfg, unwrap(model), classes, size, bank, keep_bank=True, point=point))


def run_distributed(
    cfg: TrainConfig,
    data: Data,
    device: torch.device,
    out_dir: Path,
    cache_dir: Path | None,
    oracle: Oracle | None = None,
) -> dict[str, Any]:
    """Pretrain (sharded, cached), adapt (Algorithm 1) and test, on every rank together.

    ``oracle``'s ``ask`` / ``spent`` are used on rank 0 only (default: the ground-truth oracle
    and rank 0's bank); its ``expected`` (M_e) must be the same on every rank. Rank 0 writes
    ``out_dir/checkpoint.pt`` at every evaluation and ``out_dir/result.json`` at the end.
    """
    rank = dist.get_rank()
    comm = device if dist.get_backend() == "nccl" else torch.device("cpu")
    shard = functools.partial(wrap, device=device)
    model = pretrain(cfg, data, device, cache_dir, rank == 0, wrap=shard, writes=rank == 0)
    dist.barrier()
    wrapped = wrap(model, device)
    n, _, h, w = data.target.images.shape
    bank = LabelBank(n, h, w)
    oracle = oracle or local_oracle(data.target.labels, bank)
    shared = Oracle(
        RankZeroOracle(oracle.ask if rank == 0 else None, comm),
        RankZeroSpent(oracle.spent, comm),
        oracle.expected,
    )

    def on_eval(point: dict[str, Any]) -> None:
        save_checkpoint(out_dir / "checkpoint.pt", cfg, wrapped, data, bank, point)
        if rank == 0:
            log.info(
                "iteration %d: target-val mIoU %.2f, %d labeled pixels",
                point["iteration"],
                point["miou"],
                point["labeled_pixels"],
            )

    hooks = AdaptHooks(on_eval=on_eval, progress=rank == 0)
    result = adapt(wrapped, cfg, data, shared, bank, device, hooks)
    test = evaluate(wrapped, data.test, data.num_classes, device)
    report = {
        "strategy": cfg.strategy,
        "budget_rate": cfg.budget_rate,
        "world_size": dist.get_world_size(),
        "labeled_pixels": bank.num_labeled,
        "labeled_rate": bank.num_labeled / data.target_pixels,
        "val_miou": result.best_val,
        "best_iteration": result.best_iteration,
        "test_miou": test.miou(),
        "test_split": cfg.test_split,
        "test_per_class_iou": test.per_class_iou(),
        "curve": result.curve,
    }
    if rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "result.json").write_text(json.dumps(report, indent=1))
    return report


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="torchrun --nproc_per_node=N -m trainer.distributed",
        description="one ADA-MCU run on several GPUs (DDP)",
    )
    p.add_argument("--config", required=True, help="a TOML/JSON file of TrainConfig fields")
    p.add_argument("--strategy", help="override the config's strategy")
    p.add_argument("--budget", type=float, help="share of target pixels, e.g. 0.017")
    p.add_argument("--data", help="override data_root")
    p.add_argument("--out", default="outputs/ddp")
    p.add_argument("--cache", default="outputs/cache")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``torchrun ... -m trainer.distributed`` (also runs as one process)."""
    args = _parser().parse_args(argv)
    for key, value in (
        ("RANK", "0"),
        ("WORLD_SIZE", "1"),
        ("LOCAL_RANK", "0"),
        ("MASTER_ADDR", "127.0.0.1"),
        ("MASTER_PORT", "29500"),
    ):
        os.environ.setdefault(key, value)
    cuda = torch.cuda.is_available()
    device = torch.device("cuda", int(os.environ["LOCAL_RANK"])) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if cuda else "gloo")
    rank = dist.get_rank()
    logging.basicConfig(
        level=logging.INFO if rank == 0 else logging.WARNING,
        format=f"%(asctime)s rank {rank} %(name)s %(message)s",
    )
    try:
        base = load_config(args.config)
        changes: dict[str, Any] = {"device": str(device)}
        if args.budget is not None:
            changes["budget_rate"] = args.budget
        if args.data:
            changes["data_root"] = args.data
        cfg = configure(base, args.strategy or base.strategy, **changes)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        log.info("config %s", json.dumps(cfg.to_dict()))
        if rank != 0:
            dist.barrier()  # rank 0 decodes first and fills cfg.data_cache
        data = load_data(cfg)
        if rank == 0:
            dist.barrier()
        report = run_distributed(cfg, data, device, Path(args.out), Path(args.cache))
        if rank == 0:
            print(
                f"{cfg.strategy} on {dist.get_world_size()} processes: {cfg.test_split} mIoU "
                f"{report['test_miou']:.1f}, labeled {report['labeled_pixels']} pixels "
                f"-> {Path(args.out) / 'result.json'}",
                flush=True,
            )
        _leave_together()
        return 0
    finally:
        dist.destroy_process_group()


def _leave_together() -> None:
    """Wait until every rank is done before any rank tears its process group down.

    Without it rank 1 (which writes nothing) reached ``destroy_process_group`` and interpreter
    exit while rank 0 still wrote its files, and once in CI died with gloo's "terminate called
    without an active exception" (SIGABRT) after a run that had succeeded. The collection first
    frees the run's DDP wrappers (they hold the process group) while it is still alive; a DDP
    wrapper left in a reference cycle until interpreter exit reproduced that abort.
    """
    gc.collect()
    dist.barrier()


if __name__ == "__main__":
    sys.exit(main())
