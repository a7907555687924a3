"""The adaptation loop (Algorithm 1 lines 3-17): a thin driver over the two halves of an
iteration, asking (the run's selection policy on a budget view read once per iteration of the
query window) and learning (:mod:`trainer.loop.learn`), with evaluation on target-val.

The oracle is anything that answers ``ask(index, ys, xs, group, scores) -> classes`` with a
``spent()`` of the budget: the in-process ground truth (:func:`local_oracle`), the labeling
service (``trainer/worker/``) or rank 0's (``trainer/distributed/``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from trainer.config import QueryKind, Selection, TrainConfig, check_model_selection
from trainer.cost import PIXEL, REGION, CostModel, SecondsLedger, seconds_budget
from trainer.data.folder import to_float
from trainer.data.superpixels import region_maps
from trainer.learning.labelbank import LabelBank
from trainer.loop.bundles import Batch, Learner, LoopState, Oracle
from trainer.loop.progress import Progress, adapt_update, progress_mode
from trainer.loop.schedule import QueryLog, new_loop_state, target_order
from trainer.loop.step import adaptation_step, asking_at
from trainer.loop.stepstats import StepStats
from trainer.loop.train import Data, GroundTruthOracle, budget_pixels, evaluate, source_batch
from trainer.nets.model import param_groups, poly_lr, set_lr
from trainer.selection.policy import make_policy
from trainer.strategies import for_budget


@dataclass
class AdaptResult:
    """The selected model and what the run spent: ``expected`` is M_e, ``spent`` the pixels
    spent per group at the end (the oracle's count; ``"high"``: from G_h, Algorithm 1's
    M_a, whose aim is ``M_e // 2``)."""

    model: torch.nn.Module
    bank: LabelBank
    best_val: float
    best_iteration: int
    curve: list[dict[str, Any]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    queries: QueryLog = field(default_factory=QueryLog)
    expected: int = 0
    spent: dict[str, int] = field(default_factory=dict)

    def high_supplied(self) -> dict[str, int]:
        """What G_h supplied against Algorithm 1's aim: ``{"spent_high", "high_expected"}``
        (``M_e // 2``; spent_high < high_expected when G_h could not supply it in the high
        window and G_m took the rest)."""
        return {"spent_high": self.spent.get("high", 0), "high_expected": self.expected // 2}


@dataclass
class AdaptHooks:
    """How a run starts and what it tells its caller: the iteration to start at, the loop
    state to continue (thresholds, DCCM, window), callbacks after each evaluation and step,
    and the progress line's mode."""

    start: int = 0
    state: LoopState | None = None
    on_eval: Callable[[dict[str, Any]], None] | None = None
    on_step: Callable[[int, LoopState], None] | None = None
    progress: bool | str = True


def adapt(
    model: torch.nn.Module,
    cfg: TrainConfig,
    data: Data,
    oracle: Oracle,
    bank: LabelBank,
    device: torch.device,
    hooks: AdaptHooks | None = None,
) -> AdaptResult:
    """Algorithm 1 lines 3-17 with model selection on target-val (best state is kept):
    ``cfg.passes`` passes over target-train (``cfg.iterations`` when set), evaluated every
    ``cfg.eval_every`` iterations (0: once per pass). M_e is the oracle's (the service's) when
    it has one, else the config's rate times the target pixels; what is spent is read once per
    iteration of the query window, never after it."""
    hooks = hooks or AdaptHooks()
    torch.manual_seed(cfg.seed + 1)
    n_target = len(data.target.ids)
    iterations = cfg.adapt_iterations(n_target)
    length = cfg.pass_length(n_target)
    eval_every = cfg.eval_every or length
    check_model_selection(cfg, eval_every, iterations)
    expected = _expected(cfg, data, oracle)
    cfg = for_budget(cfg, expected, data.target_pixels)  # mcu-cap's G_l
    if cfg.query_kind != QueryKind.PIXELS and data.target_regions is None:
        data.target_regions = region_maps(data.target.images, cfg.regions_per_image)
    state = hooks.state or new_loop_state(cfg, expected, data.num_classes, n_target)
    state.dccm = state.dccm.to(device)
    opt = torch.optim.SGD(
        param_groups(model, cfg.lr, cfg.head_lr_mult, cfg.weight_decay),
        lr=cfg.lr,
        momentum=cfg.momentum,
    )
    gen = torch.Generator().manual_seed(cfg.seed + 2)
    order = target_order(n_target, iterations, cfg.batch_target, gen)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    learner = Learner(model, opt, cfg, state, gen, sync)
    policy = make_policy(cfg, state.sampler, n_target)
    run = _Run(AdaptResult(model, bank, -1.0, -1), copy.deepcopy(model.state_dict()), {})
    bar = Progress(
        iterations, f"adapt {cfg.strategy}", mode=progress_mode(hooks.progress), start=hooks.start
    )
    for it in range(hooks.start, iterations):
        set_lr(opt, poly_lr(cfg.lr, it, iterations, cfg.poly_power))
        batch = _batch(data, order[it], cfg, gen, device)
        stats = adaptation_step(learner, batch, bank, asking_at(policy, state, it, oracle))
        run.step(stats)
        if hooks.on_step is not None:
            hooks.on_step(it, state)
        adapt_update(bar, stats, bank, (it + 1) / length, iterations / length)
        if (it + 1) % eval_every == 0 or it + 1 == iterations:
            run.evaluated(_eval_point(model, data, device, it + 1, bank), hooks.on_eval)
    bar.close()
    model.load_state_dict(run.best_state)
    run.best.timings = run.timings
    run.best.expected, run.best.spent = expected, dict(oracle.spent())
    return run.best


@dataclass
class _Run:
    """The best point so far (its weights), and the timings summed over the steps."""

    best: AdaptResult
    best_state: dict[str, Any]
    timings: dict[str, float]

    def step(self, stats: StepStats) -> None:
        for k, v in stats.seconds.items():
            self.timings[k] = self.timings.get(k, 0.0) + v
        self.best.queries.add(stats)

    def evaluated(
        self, point: dict[str, Any], on_eval: Callable[[dict[str, Any]], None] | None
    ) -> None:
        self.best.curve.append(point)
        if on_eval is not None:
            on_eval(point)
        if point["miou"] > self.best.best_val:
            self.best.best_val, self.best.best_iteration = point["miou"], point["iteration"]
            self.best_state = copy.deepcopy(self.best.model.state_dict())


def _batch(
    data: Data, tidx: torch.Tensor, cfg: TrainConfig, gen: torch.Generator, device: torch.device
) -> Batch:
    """Source images drawn at random, the target images ``tidx`` (their labels only for the
    supervised ceiling)."""
    sx, sy = source_batch(data, cfg.batch_source, gen, cfg, device)
    tx = to_float(data.target.images[tidx]).to(device)
    ty = data.target.labels[tidx].long().to(device) if cfg.selection == Selection.ALL else None
    regions = None if data.target_regions is None else data.target_regions[tidx]
    return Batch(sx, sy, tx, tidx, ty, regions)


def _eval_point(
    model: torch.nn.Module, data: Data, device: torch.device, iteration: int, bank: LabelBank
) -> dict[str, Any]:
    cm = evaluate(model, data.val, data.num_classes, device)
    return {
        "iteration": iteration,
        "labeled_pixels": bank.num_labeled,
        "miou": cm.miou(),
        "per_class_iou": [None if v != v else round(100 * v, 2) for v in cm.iou().tolist()],
        "split": "target-val",
    }


def local_oracle(
    labels: torch.Tensor, bank: LabelBank, ledger: SecondsLedger | None = None
) -> Oracle:
    """The in-process oracle: answers from the ground truth ``labels``, the budget spent per
    group is the labels stored in ``bank`` (a skip costs nothing), M_e from the config; with a
    ``ledger`` (a budget in annotator seconds) the seconds it charged per group instead."""
    if ledger is None:
        return Oracle(GroundTruthOracle(labels), bank.counts)
    return Oracle(GroundTruthOracle(labels), ledger.spent, charge=ledger.charge)


def _expected(cfg: TrainConfig, data: Data, oracle: Oracle) -> int:
    """M_e in pixels: the service's, else the config's rate; under a seconds budget the labels
    the seconds buy (:func:`seconds_pixels`), which needs an oracle that charges seconds."""
    if cfg.budget_seconds_per_image <= 0:
        return budget_pixels(cfg, data) if oracle.expected is None else oracle.expected
    if oracle.charge is None:
        raise ValueError(
            "budget_seconds_per_image needs an oracle that charges seconds: the in-process "
            "simulated one (adamcu bench) or a session (adamcu-worker --mode session); set it "
            "to 0 for adamcu-worker --mode benchmark or human"
        )
    return seconds_pixels(cfg, data)


def seconds_pixels(cfg: TrainConfig, data: Data) -> int:
    """The labelled pixels a seconds budget buys at the mean cost of the run's query kind (a
    region: ``regions_per_image``-th of an image; "both": half the seconds each way)."""
    total = seconds_budget(cfg.budget_seconds_per_image, len(data.target.ids))
    model, (h, w) = CostModel(spread=cfg.cost_spread), data.target.images.shape[-2:]
    pixels = total / model.seconds[PIXEL]
    regions = total / model.seconds[REGION] * (h * w / cfg.regions_per_image)
    kind = QueryKind(cfg.query_kind)
    if kind == QueryKind.BOTH:
        return int((pixels + regions) / 2)
    return int(regions if kind == QueryKind.REGIONS else pixels)
