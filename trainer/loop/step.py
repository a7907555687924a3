"""One ADA-MCU iteration (Algorithm 1, lines 5-16) as its two halves: asking and learning.

The flow is one way: network -> score -> policy -> oracle -> label bank -> learning step.
:func:`forward` runs one pass over a batch of source and target images (``cfg.batch_source``
+ ``cfg.batch_target``) and scores every pixel (Eq. 1-3); :func:`ask` hands the target maps
and a :class:`~trainer.selection.views.BudgetView` to the run's selection policy
(:mod:`trainer.selection.policy`), asks the oracle and merges its answers into the label bank;
:func:`learn` reads the batch's labels from the bank and optimises Eq. 4-6 plus the MCU losses
(Eq. 9-11) weighted by the DCCM (Eq. 7-8). :func:`adaptation_step` composes them with timings;
a session's training step is the same call without asking. The loop around it (epochs,
evaluation, checkpoints) is :mod:`trainer.loop.train`.
"""

from __future__ import annotations

import torch

from trainer.config import TrainConfig
from trainer.constants import IGNORE_INDEX
from trainer.cost import PIXEL, REGION
from trainer.learning.labelbank import LabelBank
from trainer.loop.bundles import Ask, Asking, Batch, Charge, Forward, Learner, LoopState, Oracle
from trainer.loop.learn import learn
from trainer.loop.stepstats import StepStats, Timer
from trainer.nets.forward import maybe_compiled, train_forward
from trainer.ops.draws import host_to_device
from trainer.selection.policy import NoQueries
from trainer.selection.regions import dominant_answers, region_count
from trainer.selection.sampling import pseudo_open
from trainer.selection.uncertainty import partition, uncertainty_score
from trainer.selection.views import BudgetView, Policy, ScoreMaps


def calibrate_thresholds(state: LoopState, score: torch.Tensor, cfg: TrainConfig) -> None:
    """Start pi_high / pi_low at the config's quantiles of the first target batch's scores."""
    state.sampler.calibrate(score, cfg.pi_high_quantile, cfg.pi_low_quantile, cfg.seed)
    state.calibrated = True


def adaptation_step(
    learner: Learner, batch: Batch, bank: LabelBank, asking: Asking | None = None
) -> StepStats:
    """One iteration of Algorithm 1 (lines 5-16): forward and score, ask (unless ``asking``
    is None: outside the query window, or a session, whose rounds ask), learn. Returns
    losses, queries and timings."""
    timer, stats = Timer(learner.sync), StepStats(phase="none")
    fwd = forward(learner, batch, timer)
    mask, phase = None, None
    if asking is not None:
        phase = asking.budget.phase()  # before this batch's queries (pseudo_after_budget)
        mask = ask(fwd, batch, bank, asking, learner.generator, stats, timer)
    learn(learner, fwd, batch, bank, stats, mask, timer, pseudo_open(learner.cfg, phase))
    stats.seconds = timer.seconds
    return stats


def asking_at(policy: Policy, state: LoopState, iteration: int, oracle: Oracle) -> Asking | None:
    """The asking half of ``iteration``: the budget read once (the oracle's ``spent``), or
    None outside the query window and for a policy that never asks (no read at all)."""
    if isinstance(policy, NoQueries) or iteration >= state.window.query_until:
        return None
    view = BudgetView.at(state.window, iteration, oracle.spent())
    return Asking(policy, view, oracle.ask, oracle.charge)


def forward(learner: Learner, batch: Batch, timer: Timer | None = None) -> Forward:
    """The batch through the network, every pixel scored (Eq. 1) and grouped (III-B)."""
    cfg, timer = learner.cfg, timer or Timer(learner.sync)
    device, n_src = batch.source_x.device, batch.source_x.shape[0]
    rows = n_src + (len(batch.target_x) if cfg.score_dropout else 0)  # rows with dropout
    x = torch.cat([batch.source_x, batch.target_x])
    out, main, aux = train_forward(learner.model, x, rows, cfg.amp and device.type == "cuda")
    timer.lap("forward")
    scored = _score(cfg, learner.state, main, aux, n_src)
    timer.lap("scoring")
    return Forward(out, main, aux, *scored, n_src)


def ask(
    fwd: Forward,
    batch: Batch,
    bank: LabelBank,
    asking: Asking,
    generator: torch.Generator,
    stats: StepStats,
    timer: Timer | None = None,
) -> torch.Tensor:
    """The policy's pixels of the target batch, asked and merged into the bank; returns the
    (B,H,W) bool mask asked. ``stats`` gets the counts and the group."""
    n_src, device = fwd.n_src, batch.source_x.device
    timer = timer or Timer(lambda: None)
    _, _, asked = bank.batch(batch.target_index)
    regions = batch.target_regions
    maps = ScoreMaps(
        fwd.score[n_src:],
        fwd.groups[n_src:],
        fwd.prob,
        ~host_to_device(asked, device),
        None if regions is None else host_to_device(regions, device),
    )
    mask, group = asking.policy.select(maps, asking.budget, generator)
    kind = asking.policy.kind_at(asking.budget)
    timer.lap("selection")
    if kind == REGION:
        stats.queried, stats.answered = query_regions(mask, group, batch, bank, asking, stats)
    else:
        stats.queried, stats.answered = query_oracle(
            mask, group, fwd.score[n_src:], batch, bank, asking.ask, asking.charge
        )
    stats.phase = group
    timer.lap("oracle")
    return mask


def query_oracle(
    mask: torch.Tensor,
    group: str,
    score: torch.Tensor,
    batch: Batch,
    bank: LabelBank,
    ask: Ask,
    charge: Charge | None = None,
) -> tuple[int, int]:
    """Ask the oracle about the masked pixels and merge the answers. Returns (asked, answered).
    ``charge`` books each pixel as a pixel click (a skip as a skip) against a seconds budget.

    No host sync when nothing was selected by construction (``group`` "none"/"done"); else the
    masked pixels' coordinates and scores come to the host in one copy after their nonzero."""
    if group in ("none", "done"):
        return 0, 0
    b, ys, xs = mask.nonzero(as_tuple=True)
    if b.numel() == 0:
        return 0, 0
    bits = score[b, ys, xs].float().view(torch.int32).long()
    host = torch.stack([b, ys, xs, bits]).cpu()  # the one copy to the host
    index = batch.target_index[host[0]]
    scores = host[3].to(torch.int32).view(torch.float32)
    answers = ask(index, host[1], host[2], group, scores)
    answered = bank.merge(index, host[1], host[2], answers, group)
    if charge is not None:
        skipped = int((answers == IGNORE_INDEX).sum())
        charge(PIXEL, group, int(b.numel()) - skipped, skipped)
    return int(b.numel()), answered


def query_regions(
    mask: torch.Tensor, group: str, batch: Batch, bank: LabelBank, asking: Asking, stats: StepStats
) -> tuple[int, int]:
    """Region queries: the masked pixels are whole superpixels (``batch.target_regions``); the
    oracle's answer at each pixel (the ground truth, in simulation) gives each region its
    dominant class (:func:`dominant_answers`), which labels every asked pixel of it. One region
    is one query (charged as a region click, a region without any class as a skip); ``stats``
    gets the regions, their labelled pixels and the noisy ones (GT differs from the label).
    Returns (pixels asked, pixels answered)."""
    if group in ("none", "done") or batch.target_regions is None:
        return 0, 0
    b, ys, xs = mask.nonzero(as_tuple=True)
    if b.numel() == 0:
        return 0, 0
    b, ys, xs = b.cpu(), ys.cpu(), xs.cpu()
    regions = batch.target_regions
    count = region_count(regions)
    region_ids = b * count + regions[b, ys, xs].long()
    index = batch.target_index[b]
    answers = asking.ask(index, ys, xs, group, torch.zeros(len(b)))
    labels, noisy, counted = dominant_answers(region_ids, answers.cpu())
    answered = bank.merge(index, ys, xs, labels, group)
    asked = torch.unique(region_ids)
    skipped = int(torch.unique(region_ids[labels == IGNORE_INDEX]).numel())
    if asking.charge is not None:
        asking.charge(REGION, group, int(asked.numel()) - skipped, skipped)
    stats.regions, stats.region_pixels, stats.region_noisy = int(asked.numel()), counted, noisy
    return int(b.numel()), answered


def _score(
    cfg: TrainConfig, state: LoopState, main: torch.Tensor, aux: torch.Tensor, n_src: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Eq. 1 on every pixel, the groups (III-B; thresholds calibrated on the first target
    batch), target softmax and the argmax of every image (pseudo labels, anchors, DCCM)."""
    with torch.no_grad():
        score = maybe_compiled(uncertainty_score, cfg.compile_step)(main, aux, cfg.gamma)
        if not state.calibrated:
            calibrate_thresholds(state, score[n_src:], cfg)
        s = state.sampler.state
        groups = partition(score, s.pi_high, s.pi_low)
        prob = main[n_src:].softmax(1)
        pred = main.detach().max(1).indices  # (B,H,W) argmax (max is faster)
    return score, groups, prob, pred
