"""The ADA-MCU step makes no host synchronisation where the oracle is not asked (issue 14).

On the CPU, :class:`trainer.bench.syncs.SyncCounter` counts the calls that would synchronise a
GPU (``item``, ``nonzero``, boolean indexing, ...); on CUDA the step runs under
``torch.cuda.set_sync_debug_mode("error")``.
"""

import pytest
import torch

from trainer.bench.syncs import SyncCounter
from trainer.config import TrainConfig
from trainer.learning.labelbank import LabelBank
from trainer.loop.bundles import Batch, Learner, Oracle
from trainer.loop.schedule import new_loop_state
from trainer.loop.step import adaptation_step, asking_at
from trainer.loop.train import GroundTruthOracle
from trainer.nets.model import build_model, param_groups
from trainer.selection.policy import make_policy
from trainer.strategies import configure

H, W, C = 32, 48, 5
ASKING_STEP_SYNCS = 4  # the oracle needs the asked pixels' coordinates and scores on the host


def _run(device: torch.device, strategy: str = "full"):
    """A tiny run; yields (iteration, step) where step() runs that iteration's step."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    # fixed_shapes "on": the CUDA path ("auto" takes the exact sizes on the CPU)
    base = TrainConfig(iterations=8, embed_dim=16, fixed_shapes="on")
    cfg = configure(base, strategy, budget_rate=0.05)
    model = build_model("small", C, embed_dim=16).to(device)
    opt = torch.optim.SGD(param_groups(model, 0.01, 1.0), lr=0.01)
    target = torch.randint(C, (4, H, W), generator=gen).to(torch.uint8)
    bank = LabelBank(4, H, W)
    state = new_loop_state(cfg, int(0.05 * target.numel()), C, 4)
    oracle, spent = GroundTruthOracle(target), bank.counts
    learner, policy = Learner(model, opt, cfg, state, gen), make_policy(cfg, state.sampler)
    for it in range(cfg.iterations):
        index = torch.tensor([(2 * it) % 4, (2 * it + 1) % 4])
        batch = Batch(
            torch.randn(2, 3, H, W, generator=gen).to(device),
            torch.randint(C, (2, H, W), generator=gen).to(device),
            torch.randn(2, 3, H, W, generator=gen).to(device),
            index,
        )

        def step(counter: SyncCounter | None = None, batch=batch, it=it):
            if counter is None:
                asking = asking_at(policy, state, it, Oracle(oracle, spent))
                return adaptation_step(learner, batch, bank, asking)
            hosted = Oracle(counter.host(oracle), counter.host(spent))
            with counter:
                return adaptation_step(learner, batch, bank, asking_at(policy, state, it, hosted))

        yield it, state, step


@pytest.mark.parametrize("strategy", ["full", "al-as"])
def test_step_makes_no_host_sync_when_the_oracle_is_not_asked(strategy: str) -> None:
    seen = {"asking": 0, "quiet": 0}
    for it, state, step in _run(torch.device("cpu"), strategy):
        if it == 0:  # the first step calibrates the thresholds (quantiles, once per run)
            step()
            continue
        counter = SyncCounter()
        stats = step(counter)
        if it >= state.window.query_until:
            assert stats.queried == 0
            assert counter.count == 0, counter.where
            seen["quiet"] += 1
        else:
            assert counter.count <= ASKING_STEP_SYNCS, counter.where
            seen["asking"] += stats.queried > 0
    assert seen["quiet"] >= 2 and seen["asking"] >= 1


def test_reading_the_stats_syncs_once() -> None:
    """The loss and its parts come to the host together, when first read."""
    for it, _state, step in _run(torch.device("cpu")):
        stats = step()
        if it == 2:
            break
    counter = SyncCounter()
    with counter:
        loss, parts = stats.loss, dict(stats.parts)
        again = stats.loss
    assert counter.count == 1, counter.where
    assert isinstance(loss, float) and loss == again
    assert all(isinstance(v, float) for v in parts.values()) and "p2p_intra" in parts


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_step_does_not_sync_on_cuda() -> None:
    device = torch.device("cuda")
    for it, state, step in _run(device):
        if it == 0 or it < state.window.query_until:
            step()
            continue
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            step()
        finally:
            torch.cuda.set_sync_debug_mode("default")
