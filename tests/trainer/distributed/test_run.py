"""trainer/distributed/run.py: DDP with gloo on the CPU, 2 processes, against one process.

What is compared, over three ADA-MCU iterations (Algorithm 1 with MCU + DCCM) on the same
global batches (2 source + 2 target images): the loss of each iteration, the pixels queried
and their labels (the whole label bank, ``asked`` included), the oracle's calls (rank 0 only,
the budget counted once), the DCCM and every parameter after the last step. They are equal
because every rank sees the gathered outputs of the whole global batch and the gradients are
exactly one process's (see the module docstring). The model here has no train-mode
BatchNorm and no dropout (SyncBatchNorm is GPU-only), so a sample's forward does not depend
on which other samples share its shard.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from stack.processes import free_port
from trainer.config import TrainConfig
from trainer.distributed.run import RankZeroOracle, RankZeroSpent, run_distributed
from trainer.distributed.wrap import unwrap, wrap
from trainer.learning.labelbank import LabelBank
from trainer.loop import checkpoint
from trainer.loop.bundles import Batch, Learner, Oracle
from trainer.loop.schedule import new_loop_state
from trainer.loop.step import adaptation_step, asking_at
from trainer.loop.train import GroundTruthOracle, load_data
from trainer.nets.backbones import freeze_batchnorm
from trainer.nets.model import build_model, param_groups
from trainer.selection.policy import make_policy
from trainer.strategies import configure

CLASSES, H, W, TARGETS, STEPS = 5, 24, 40, 4, 3


def _config() -> TrainConfig:
    return configure(
        TrainConfig(
            model="small",
            embed_dim=8,
            device="cpu",
            amp=False,
            iterations=4,
            budget_rate=0.05,
            min_low_share=0.01,
            max_anchors_per_class=4,
            max_samples_per_class=8,
        ),
        "full",
    )


def _model(name: str = "small") -> nn.Module:
    torch.manual_seed(0)
    model = freeze_batchnorm(build_model(name, CLASSES, embed_dim=8))
    for sub in model.modules():
        if isinstance(sub, nn.Dropout2d | nn.Dropout):
            sub.p = 0.0  # no dropout (timm's attention reads its dropouts' p: kept in place)
    return model


def _blocks(n: int, gen: torch.Generator) -> torch.Tensor:
    coarse = torch.randint(CLASSES, (n, 1, H // 8, W // 8), generator=gen).float()
    return nn.functional.interpolate(coarse, size=(H, W)).long()[:, 0]


def _batches() -> tuple[list[Batch], torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    target_labels = _blocks(TARGETS, gen).to(torch.uint8)
    batches = []
    for step in range(STEPS):
        index = torch.tensor([(2 * step) % TARGETS, (2 * step + 1) % TARGETS])
        batches.append(
            Batch(
                torch.randn(2, 3, H, W, generator=gen),
                _blocks(2, gen),
                torch.randn(2, 3, H, W, generator=gen) + 0.3 * step,
                index,
            )
        )
    return batches, target_labels


class CountingOracle(GroundTruthOracle):
    def __init__(self, labels: torch.Tensor) -> None:
        super().__init__(labels)
        self.calls = 0
        self.pixels = 0

    def __call__(self, index, ys, xs, group, scores):  # noqa: ANN001
        self.calls += 1
        self.pixels += len(index)
        return super().__call__(index, ys, xs, group, scores)


def _run(model: nn.Module, distributed: bool) -> dict:
    """STEPS iterations of ``adaptation_step``; one process, or this rank of a gloo group."""
    torch.set_num_threads(1)
    cfg = _config()
    batches, target_labels = _batches()
    bank = LabelBank(TARGETS, H, W)
    state = new_loop_state(cfg, int(cfg.budget_rate * bank.num_pixels), CLASSES, TARGETS)
    rank0 = not distributed or dist.get_rank() == 0
    oracle = CountingOracle(target_labels) if rank0 else None
    ask, spent = oracle, bank.counts
    if distributed:
        model = wrap(model, torch.device("cpu"))
        ask = RankZeroOracle(oracle, torch.device("cpu"))
        spent = RankZeroSpent(spent, torch.device("cpu"))
    opt = torch.optim.SGD(param_groups(model, 0.01, 10.0, 1e-4), lr=0.01, momentum=0.9)
    gen = torch.Generator().manual_seed(2)
    learner, policy = Learner(model, opt, cfg, state, gen), make_policy(cfg, state.sampler)
    losses = []
    for it, batch in enumerate(batches):
        asking = asking_at(policy, state, it, Oracle(ask, spent))
        stats = adaptation_step(learner, batch, bank, asking)
        losses.append(stats.loss)
    labels, _, asked = bank.batch(torch.arange(TARGETS))
    return {
        "losses": losses,
        "labels": labels,
        "asked": asked,
        "dccm": state.dccm,
        "params": {k: v.detach().clone() for k, v in unwrap(model).state_dict().items()},
        "calls": oracle.calls if oracle else 0,
        "pixels": oracle.pixels if oracle else 0,
    }


def _worker(rank: int, world: int, port: int, out: str, name: str) -> None:
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    try:
        torch.save(_run(_model(name), distributed=True), Path(out) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


# the small net, and a timm encoder (issue 23: the DDP path on the field's networks)
@pytest.mark.parametrize("name", ["small", "dinov2_s14_mlp"])
def test_two_gloo_processes_equal_one_process(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(Path(__file__).parents[2]))  # the children import this file
    mp.spawn(_worker, args=(2, free_port(), str(tmp_path), name), nprocs=2, join=True)
    single = _run(_model(name), distributed=False)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1)]
    assert single["pixels"] > 0 and single["labels"].ne(255).any()
    for got in ranks:
        torch.testing.assert_close(
            torch.tensor(got["losses"]), torch.tensor(single["losses"]), rtol=1e-5, atol=1e-6
        )
        assert torch.equal(got["asked"], single["asked"])  # the same pixels selected
        assert torch.equal(got["labels"], single["labels"])  # and the same answers merged
        torch.testing.assert_close(got["dccm"], single["dccm"], rtol=1e-5, atol=1e-6)
        for name, value in single["params"].items():
            torch.testing.assert_close(got["params"][name], value, rtol=1e-4, atol=1e-6)
    # only rank 0 asked, and it asked what one process asks: the budget is counted once
    assert (ranks[0]["calls"], ranks[0]["pixels"]) == (single["calls"], single["pixels"])
    assert (ranks[1]["calls"], ranks[1]["pixels"]) == (0, 0)


def _tiny_run(root: Path) -> dict:
    """The config of a 2 + 2 iteration run on a tiny generated benchmark under ``root``."""
    from trainer.data.synth import generate_benchmark

    data = generate_benchmark(
        root / "data",
        height=16,
        width=32,
        counts={"source-train": 4, "target-train": 4, "target-val": 2, "target-test": 2},
        seed=0,
    )
    return {
        "model": "small",
        "embed_dim": 8,
        "data_root": str(data),
        "pretrain_iterations": 2,
        "iterations": 2,
        "eval_every": 1,
        "budget_rate": 0.05,
        "threads": 1,
        "amp": False,
        "device": "cpu",
    }


def _run_files(rank: int, world: int, port: int, root: str, config: dict) -> None:
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    try:
        torch.set_num_threads(1)
        cfg = TrainConfig(**config)
        cfg = configure(cfg, cfg.strategy)
        data, cpu = load_data(cfg), torch.device("cpu")
        run_distributed(cfg, data, cpu, Path(root) / "out", Path(root) / "cache")
    finally:
        dist.destroy_process_group()


def test_ddp_writes_the_one_checkpoint_format(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pre-training cache and the run's checkpoint a DDP run writes (rank 0) are the files
    one process writes: they load with ``weights_only=True`` and as checkpoints."""
    monkeypatch.syspath_prepend(str(Path(__file__).parents[2]))  # the children import this file
    config = _tiny_run(tmp_path)
    mp.spawn(_run_files, args=(2, free_port(), str(tmp_path), config), nprocs=2, join=True)
    written = torch.load(tmp_path / "out" / "checkpoint.pt", weights_only=True)
    assert written["format"] == checkpoint.FORMAT and written["point"]["iteration"] == 2
    bank = LabelBank(1, 1, 1)  # it takes the shape of the state
    bank.load_state_dict(written["label_bank"])
    assert bank.num_labeled == written["label_summary"]["labeled_pixels"] > 0
    names = [c.name for c in checkpoint.load(tmp_path / "out" / "checkpoint.pt").classes]
    (cache,) = (tmp_path / "cache").glob("pretrain-*.pt")
    assert [c.name for c in checkpoint.load(cache).classes] == names


@pytest.mark.slow
def test_torchrun_entry_point(tmp_path: Path) -> None:
    """``torchrun --nproc_per_node=2 -m trainer.distributed.run`` on the bundled format."""
    config = tmp_path / "run.json"
    config.write_text(json.dumps(_tiny_run(tmp_path)))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        f"--master_port={free_port()}",
        "-m",
        "trainer.distributed.run",
        "--config",
        str(config),
        "--out",
        str(tmp_path / "out"),
        "--cache",
        str(tmp_path / "cache"),
    ]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    assert result["world_size"] == 2 and len(result["curve"]) == 2
    written = checkpoint.load(tmp_path / "out" / "checkpoint.pt")
    assert written.config.iterations == 2 and written.raw["label_bank"] is not None
    assert len(list((tmp_path / "cache").glob("pretrain-*.pt"))) == 1


def test_every_rank_finishes_before_any_tears_down(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``main`` meets the other ranks at a barrier after the run and before
    ``destroy_process_group``: a rank that tore down while rank 0 still wrote its files died
    with SIGABRT in CI (one process here; the calls are recorded in order)."""
    from trainer.distributed import run as entry

    config = tmp_path / "run.json"
    config.write_text(json.dumps(_tiny_run(tmp_path)))
    calls: list[str] = []
    for name in ("barrier", "destroy_process_group"):
        real = getattr(dist, name)

        def spy(*args: object, _real=real, _name=name, **kwargs: object) -> object:
            calls.append(_name)
            return _real(*args, **kwargs)

        monkeypatch.setattr(dist, name, spy)
    ran = entry.run_distributed

    def run_then_mark(*args: object, **kwargs: object) -> dict:
        report = ran(*args, **kwargs)
        calls.append("run done")
        return report

    monkeypatch.setattr(entry, "run_distributed", run_then_mark)
    one = {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1"}
    for key, value in {**one, "MASTER_PORT": str(free_port())}.items():
        monkeypatch.setenv(key, value)  # restored after the test (main only sets defaults)
    out = ["--out", str(tmp_path / "out"), "--cache", str(tmp_path / "cache")]
    assert entry.main(["--config", str(config), *out]) == 0
    assert calls[calls.index("run done") :] == ["run done", "barrier", "destroy_process_group"]
