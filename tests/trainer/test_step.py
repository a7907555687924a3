"""One adaptation step for every strategy on a tiny random batch: budget and bank invariants."""

import pytest
import torch

from trainer.config import TrainConfig
from trainer.constants import IGNORE_INDEX
from trainer.labelbank import LabelBank
from trainer.model import build_model, param_groups
from trainer.step import Batch, adaptation_step
from trainer.strategies import BUDGET_FREE, STRATEGIES, configure
from trainer.train import GroundTruthOracle, local_spent, new_loop_state

H, W, C = 32, 48, 5


def _setup(strategy: str, budget_rate: float = 0.05, iterations: int = 6):
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    cfg = configure(
        TrainConfig(iterations=iterations, embed_dim=16), strategy, budget_rate=budget_rate
    )
    model = build_model("small", C, embed_dim=16)
    opt = torch.optim.SGD(param_groups(model, 0.01, 1.0), lr=0.01)
    target = torch.randint(C, (4, H, W), generator=gen).to(torch.uint8)
    bank = LabelBank(4, H, W)
    state = new_loop_state(cfg, int(budget_rate * target.numel()), C)
    return cfg, model, opt, target, bank, state, gen


def _batch(target: torch.Tensor, it: int, gen: torch.Generator, supervised: bool) -> Batch:
    index = torch.tensor([(2 * it) % 4, (2 * it + 1) % 4])
    sy = torch.randint(C, (2, H, W), generator=gen)
    ty = target[index].long() if supervised else None
    return Batch(
        torch.randn(2, 3, H, W, generator=gen),
        sy,
        torch.randn(2, 3, H, W, generator=gen),
        index,
        ty,
    )


@pytest.mark.parametrize("strategy", [s for s in STRATEGIES if s != "source-only"])
def test_step_respects_budget_and_never_asks_twice(strategy: str) -> None:
    cfg, model, opt, target, bank, state, gen = _setup(strategy)
    asked_log: list[tuple[int, int, int]] = []
    oracle = GroundTruthOracle(target)

    def ask(index, ys, xs, group, scores):
        asked_log.extend(zip(index.tolist(), ys.tolist(), xs.tolist(), strict=True))
        return oracle(index, ys, xs, group, scores)

    for it in range(cfg.iterations):
        stats = adaptation_step(
            model,
            opt,
            _batch(target, it, gen, strategy == "supervised"),
            bank,
            state,
            cfg,
            it,
            ask,
            local_spent(bank),
            gen,
        )
        assert torch.isfinite(torch.tensor(stats.loss))
        assert bank.num_labeled <= state.window.expected
    assert len(asked_log) == len(set(asked_log))  # no pixel asked twice
    labels = bank.batch(torch.arange(bank.shape[0]))[0]
    labeled = labels != IGNORE_INDEX
    assert bank.num_labeled == len(asked_log) == int(labeled.sum())
    if strategy in BUDGET_FREE:  # supervised reads every label, minent none
        assert not asked_log
    else:  # the whole budget is spent within the query window
        assert bank.num_labeled == state.window.expected
        idx, ys, xs = labeled.nonzero(as_tuple=True)
        assert torch.equal(labels[idx, ys, xs], target[idx, ys, xs].long())


def test_algorithm_one_spends_high_then_medium() -> None:
    cfg, model, opt, target, bank, state, gen = _setup("al-as", budget_rate=0.1, iterations=8)
    oracle = GroundTruthOracle(target)
    phases = []
    for it in range(cfg.iterations):
        stats = adaptation_step(
            model,
            opt,
            _batch(target, it, gen, False),
            bank,
            state,
            cfg,
            it,
            oracle,
            local_spent(bank),
            gen,
        )
        phases.append(stats.phase)
    counts = bank.counts()
    assert counts["high"] + counts["medium"] == state.window.expected
    assert counts["high"] <= state.window.expected // 2
    first_medium = phases.index("medium")
    assert "high" not in phases[first_medium:]


def test_full_strategy_updates_dccm_and_reports_contrast_losses() -> None:
    cfg, model, opt, target, bank, state, gen = _setup("full")
    oracle = GroundTruthOracle(target)
    stats = None
    for it in range(3):
        stats = adaptation_step(
            model,
            opt,
            _batch(target, it, gen, False),
            bank,
            state,
            cfg,
            it,
            oracle,
            local_spent(bank),
            gen,
        )
    assert state.dccm.abs().sum() > 0
    assert torch.all(state.dccm.diagonal() == 0)
    assert {"p2p_intra", "p2p_cross_image", "p2p_cross_domain", "c2c_intra"} <= set(stats.parts)
