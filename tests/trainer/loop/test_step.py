"""One adaptation step for every strategy on a tiny random batch: budget and bank invariants."""

import math

import pytest
import torch

from trainer.config import TrainConfig
from trainer.constants import IGNORE_INDEX
from trainer.learning.dccm import confusion_rates
from trainer.learning.labelbank import LabelBank
from trainer.loop.bundles import Ask, Batch, Learner, LoopState, Oracle
from trainer.loop.schedule import new_loop_state
from trainer.loop.step import adaptation_step, asking_at
from trainer.loop.stepstats import StepStats
from trainer.loop.train import GroundTruthOracle
from trainer.nets.model import build_model, param_groups
from trainer.selection.policy import make_policy
from trainer.strategies import BUDGET_FREE, REGION_STRATEGIES, STRATEGIES, configure

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
    state = new_loop_state(cfg, int(budget_rate * target.numel()), C, 4)
    return cfg, model, opt, target, bank, state, gen


def _step(
    cfg: TrainConfig,
    model: torch.nn.Module,
    opt: torch.optim.Optimizer,
    batch: Batch,
    bank: LabelBank,
    state: LoopState,
    it: int,
    ask: Ask,
    gen: torch.Generator,
) -> StepStats:
    """Iteration ``it`` as the benchmark loop drives it: the budget read from the bank."""
    asking = asking_at(make_policy(cfg, state.sampler), state, it, Oracle(ask, bank.counts))
    return adaptation_step(Learner(model, opt, cfg, state, gen), batch, bank, asking)


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


@pytest.mark.parametrize(
    "strategy", [s for s in STRATEGIES if s != "source-only" and s not in REGION_STRATEGIES]
)
def test_step_respects_budget_and_never_asks_twice(strategy: str) -> None:
    cfg, model, opt, target, bank, state, gen = _setup(strategy)
    asked_log: list[tuple[int, int, int]] = []
    oracle = GroundTruthOracle(target)

    def ask(index, ys, xs, group, scores):
        asked_log.extend(zip(index.tolist(), ys.tolist(), xs.tolist(), strict=True))
        return oracle(index, ys, xs, group, scores)

    for it in range(cfg.iterations):
        stats = _step(
            cfg,
            model,
            opt,
            _batch(target, it, gen, strategy == "supervised"),
            bank,
            state,
            it,
            ask,
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
    phases, asked = [], []
    for it in range(cfg.iterations):
        stats = _step(cfg, model, opt, _batch(target, it, gen, False), bank, state, it, oracle, gen)
        phases.append(stats.phase)
        asked.append(stats.queried)
    counts, window = bank.counts(), state.window
    assert (window.expected, window.query_until, window.high_until) == (614, 3, 1)
    assert counts["high"] + counts["medium"] == window.expected
    assert 0 < counts["high"] <= window.expected // 2
    # the high iteration, then the rest of M_e spread over the 2 medium iterations, then none
    rest = window.expected - counts["high"]
    assert phases == ["high", "medium", "medium"] + ["none"] * (cfg.iterations - 3)
    assert asked == [counts["high"], -(-rest // 2), rest // 2] + [0] * (cfg.iterations - 3)


def test_full_strategy_updates_dccm_and_reports_contrast_losses(monkeypatch) -> None:
    import trainer.learning.dccm as dccm

    cfg, model, opt, target, bank, state, gen = _setup("full")
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []

    def recorded(pred, labels, num_classes):
        rates, observed = confusion_rates(pred, labels, num_classes)
        seen.append((rates.clone(), observed.clone()))
        return rates, observed

    monkeypatch.setattr(dccm, "confusion_rates", recorded)
    oracle = GroundTruthOracle(target)
    stats = None
    for it in range(3):
        stats = _step(cfg, model, opt, _batch(target, it, gen, False), bank, state, it, oracle, gen)
    # Eq. 8 written out from W = 0 with the config's beta, rows of absent classes frozen
    assert len(seen) == 3 and cfg.dccm_beta == 0.9
    w = torch.zeros(C, C)
    for rates, observed in seen:
        w = torch.where(observed[:, None], 0.9 * w + 0.1 * rates, w)
    assert w.abs().sum() > 0 and torch.allclose(state.dccm, w, atol=1e-7)
    levels = ("intra", "cross_image", "cross_domain")
    mcu = {f"{k}_{lv}" for k in ("p2p", "c2c") for lv in levels}
    groups = {"target_high", "target_medium", "target_low"}
    assert set(stats.parts) == mcu | groups | {"source", "target_aux"}


def _first_step_loss(contrast_weight: float) -> tuple[float, dict[str, float]]:
    """The loss and parts of the first ``full`` step from the same seeds, at this weight."""
    cfg, model, opt, target, bank, state, gen = _setup("full")
    cfg = cfg.replace(contrast_weight=contrast_weight)
    torch.manual_seed(1)
    batch = _batch(target, 0, gen, False)
    stats = _step(cfg, model, opt, batch, bank, state, 0, GroundTruthOracle(target), gen)
    return stats.loss, stats.parts


def test_total_loss_is_segmentation_plus_weighted_contrast() -> None:
    """III-D3: L_total = L_seg + L_con, L_con the sum of the p2p and c2c losses of every
    level; ``contrast_weight`` scales L_con alone. Three runs of the same first step differ
    only in the weight, so the segmentation part is the same in each."""
    seg, parts0 = _first_step_loss(0.0)
    one, parts1 = _first_step_loss(1.0)
    two, _ = _first_step_loss(2.0)
    mcu = [k for k in parts1 if k.startswith(("p2p_", "c2c_"))]
    assert len(mcu) == 6
    con = sum(parts1[k] for k in mcu)
    assert con > 0 and parts0 == parts1  # the parts do not depend on the weight
    assert math.isclose(one, seg + con, rel_tol=1e-5)
    assert math.isclose(two, seg + 2 * con, rel_tol=1e-5)


def _copy(model: torch.nn.Module) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    import copy

    clone = copy.deepcopy(model)
    return clone, torch.optim.SGD(param_groups(clone, 0.01, 1.0), lr=0.01)


def test_train_forward_drops_out_in_source_rows_only() -> None:
    from trainer.nets.forward import train_forward

    model = build_model("small", C, embed_dim=16)  # its aux head has Dropout2d(0.1)
    x = torch.randn(4, 3, H, W, generator=torch.Generator().manual_seed(0))
    outs = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        outs.append(train_forward(model, x, 2, amp=False)[2])
    assert torch.equal(outs[0][2:], outs[1][2:])  # target rows: no dropout noise
    assert not torch.equal(outs[0][:2], outs[1][:2])  # source rows keep their dropout
    both = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        both.append(train_forward(model, x, 4, amp=False)[2])
    assert not torch.equal(both[0][2:], both[1][2:])  # dropout in every row (the old way)
    assert all(m.inplace is False for m in model.modules() if isinstance(m, torch.nn.Dropout2d))


@pytest.mark.parametrize("score_dropout", [False, True])
def test_eq1_is_scored_without_dropout_by_default(score_dropout: bool) -> None:
    """Two steps from the same weights and batch that differ only in the dropout draws ask for
    the same pixels with the same scores unless ``score_dropout`` (the train-mode forward)."""
    cfg, model, _, target, _, _, _ = _setup("al-as", budget_rate=0.2)
    cfg = cfg.replace(score_dropout=score_dropout)
    asked = []
    for seed in (1, 2):
        clone, opt = _copy(model)
        bank = LabelBank(4, H, W)
        state = new_loop_state(cfg, int(0.2 * target.numel()), C, 4)
        seen: list[torch.Tensor] = []

        def ask(index, ys, xs, group, scores, seen=seen):
            seen.append(scores)
            return GroundTruthOracle(target)(index, ys, xs, group, scores)

        gen = torch.Generator().manual_seed(0)
        batch = _batch(target, 0, gen, False)
        torch.manual_seed(seed)
        _step(cfg, clone, opt, batch, bank, state, 0, ask, gen)
        asked.append(torch.cat(seen))
    same = asked[0].shape == asked[1].shape and torch.equal(asked[0], asked[1])
    assert same is not score_dropout


def test_aux_head_is_trained_on_target_labels() -> None:
    from trainer.learning.losses import cross_entropy
    from trainer.nets.forward import train_forward

    cfg, model, _, target, bank, _, _ = _setup("supervised")
    batch = _batch(target, 0, torch.Generator().manual_seed(0), True)
    with torch.no_grad():
        _, _, aux = train_forward(model, torch.cat([batch.source_x, batch.target_x]), 2, False)
    expected = 0.5 * cross_entropy(aux[2:], batch.target_y)
    losses = {}
    for on in (True, False):
        clone, opt = _copy(model)
        run = cfg.replace(aux_target_loss=on)
        state = new_loop_state(run, 0, C, 4)
        torch.manual_seed(0)  # the same source-row dropout in both runs
        gen = torch.Generator().manual_seed(0)
        stats = adaptation_step(Learner(clone, opt, run, state, gen), batch, bank)
        losses[on] = stats
    assert abs(losses[True].parts["target_aux"] - float(expected)) < 1e-5
    assert "target_aux" not in losses[False].parts
    assert abs(losses[True].loss - losses[False].loss - float(expected)) < 1e-4


def test_query_errors_count_answered_pixels_the_model_got_wrong() -> None:
    from trainer.learning.metrics import query_errors

    mask = torch.tensor([[[True, True, True, False]]])
    labels = torch.tensor([[[1, 2, IGNORE_INDEX, 0]]])  # the third pixel got no answer
    pred = torch.tensor([[[1, 0, 0, 1]]])
    assert query_errors(mask, labels, pred) == 1


@pytest.mark.parametrize("strategy", ["al-as", "random", "source-only"])
def test_the_budget_is_read_once_per_iteration_of_the_window_and_never_after(strategy) -> None:
    """The drivers read what is spent (the service's budget: an HTTP request) once per round
    of selection: once per iteration inside the query window, never after it, never for a
    strategy that asks nothing."""
    cfg, _, _, target, bank, state, _ = _setup(strategy, iterations=12)
    reads = []
    oracle = Oracle(GroundTruthOracle(target), lambda: reads.append(1) or bank.counts())
    policy = make_policy(cfg, state.sampler)
    asked = [asking_at(policy, state, it, oracle) is not None for it in range(cfg.iterations)]
    window = state.window.query_until
    if strategy == "source-only":
        assert not reads and not any(asked)
    else:
        assert 0 < window < cfg.iterations and len(reads) == window
        assert asked == [True] * window + [False] * (cfg.iterations - window)
