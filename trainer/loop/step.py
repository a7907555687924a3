"""One ADA-MCU iteration (Algorithm 1, lines 5-16), built from the pure pieces.

``adaptation_step`` runs one forward pass over a batch of source and target images
(``cfg.batch_source`` + ``cfg.batch_target``), scores every pixel (Eq. 1-3), selects the target
pixels to query (Algorithm 1 in :mod:`trainer.selection.sampling`, or a baseline), asks the oracle,
merges its answers into the label bank, and optimises Eq. 4-6 plus the MCU losses (Eq. 9-11)
weighted by the DCCM (Eq. 7-8). Every strategy is a configuration of this one function; the
loop around it (epochs, evaluation, checkpoints) is :mod:`trainer.loop.train`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from trainer.config import TrainConfig
from trainer.constants import IGNORE_INDEX, Group
from trainer.learning import regularisers
from trainer.learning.contrast import MCUSettings, mcu_loss
from trainer.learning.dccm import confusion_rates, update_dccm
from trainer.learning.labelbank import LabelBank
from trainer.learning.losses import cross_entropy, grouped_loss, source_loss
from trainer.learning.metrics import query_errors
from trainer.learning.pixel_sets import build_pixel_sets
from trainer.loop.stepstats import StepStats
from trainer.nets.forward import maybe_compiled, train_forward
from trainer.nets.output import SegOutput
from trainer.ops.draws import host_to_device, top_k_select, uniform_select
from trainer.selection import comparison
from trainer.selection.sampling import (
    ActiveSampler,
    QueryWindow,
    per_iteration_quota,
    ripu_score,
    target_masks,
    target_pixel_bound,
)
from trainer.selection.uncertainty import partition, uncertainty_score

# ask(index (K,), ys (K,), xs (K,), group, scores (K,)) -> classes (K,) long, 255 = no answer
Ask = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, str, torch.Tensor], torch.Tensor]
# spent() -> pixels already spent per group ({"high": n, "medium": n, ...})
Spent = Callable[[], dict[str, int]]


@dataclass
class Batch:
    """source_x (Bs,3,H,W) float, source_y (Bs,H,W) long (255 ignore), target_x (Bt,3,H,W)
    float, target_index (Bt,) long on the CPU: rows of the target images in the label bank."""

    source_x: torch.Tensor
    source_y: torch.Tensor
    target_x: torch.Tensor
    target_index: torch.Tensor
    target_y: torch.Tensor | None = None  # only for the fully supervised ceiling


@dataclass
class LoopState:
    """What persists across iterations besides the network: thresholds, DCCM, the window."""

    sampler: ActiveSampler
    window: QueryWindow
    dccm: torch.Tensor
    calibrated: bool = False


class _Timer:
    def __init__(self, sync: Callable[[], None]) -> None:
        self.sync, self.seconds, self._t = sync, {}, time.perf_counter()

    def lap(self, name: str) -> None:
        self.sync()
        now = time.perf_counter()
        self.seconds[name] = self.seconds.get(name, 0.0) + now - self._t
        self._t = now


def fixed_shapes(cfg: TrainConfig, device: torch.device) -> bool:
    """Whether the step takes its fixed-size, sync-free forms (``cfg.fixed_shapes``)."""
    return cfg.fixed_shapes == "on" or (cfg.fixed_shapes == "auto" and device.type == "cuda")


def calibrate_thresholds(state: LoopState, score: torch.Tensor, cfg: TrainConfig) -> None:
    """Start pi_high / pi_low at the config's quantiles of the first target batch's scores."""
    state.sampler.calibrate(score, cfg.pi_high_quantile, cfg.pi_low_quantile)
    state.calibrated = True


def select_queries(
    cfg: TrainConfig,
    state: LoopState,
    iteration: int,
    score: torch.Tensor,
    groups: torch.Tensor,
    prob: torch.Tensor,
    unasked: torch.Tensor,
    spent: dict[str, int],
    generator: torch.Generator,
) -> tuple[torch.Tensor, str]:
    """Pixels of the target batch to ask about: (B,H,W) bool mask and its group name.

    Algorithm 1 is :meth:`ActiveSampler.select`; the baselines spend the rest of the budget
    evenly over the iterations left in the query window."""
    window = state.window
    if cfg.selection in ("none", "all") or iteration >= window.query_until:
        return torch.zeros_like(unasked), "none"
    if cfg.selection == "algorithm1":
        return state.sampler.select(groups, unasked, iteration, window, spent, generator)
    if cfg.selection in comparison.SELECTIONS:  # the comparison rows and mcu-cap
        return comparison.select(
            cfg, window, iteration, score, groups, prob, unasked, spent, generator
        )
    remaining = window.expected - sum(spent.values())
    quota = per_iteration_quota(remaining, window.query_until - iteration)
    if cfg.selection == "random":
        return uniform_select(unasked, quota, generator), "random"
    if cfg.selection == "entropy":
        return top_k_select(score, unasked, quota), "entropy"
    pred = prob.argmax(1)  # ripu
    return top_k_select(ripu_score(prob, pred, prob.shape[1]), unasked, quota), "ripu"


def query_oracle(
    mask: torch.Tensor,
    group: str,
    score: torch.Tensor,
    batch: Batch,
    bank: LabelBank,
    ask: Ask,
) -> tuple[int, int]:
    """Ask the oracle about the masked pixels and merge the answers. Returns (asked, answered).

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
    answered = bank.merge(
        index, host[1], host[2], ask(index, host[1], host[2], group, scores), group
    )
    return int(b.numel()), answered


def adaptation_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: Batch,
    bank: LabelBank,
    state: LoopState,
    cfg: TrainConfig,
    iteration: int,
    ask: Ask,
    spent: Spent,
    generator: torch.Generator,
    sync: Callable[[], None] = lambda: None,
) -> StepStats:
    """One iteration of Algorithm 1 (lines 5-16). Returns losses, queries and timings."""
    timer, stats = _Timer(sync), StepStats()
    device, n_src = batch.source_x.device, batch.source_x.shape[0]
    rows = n_src + (len(batch.target_x) if cfg.score_dropout else 0)  # rows with dropout
    x = torch.cat([batch.source_x, batch.target_x])
    out, main, aux = train_forward(model, x, rows, cfg.amp and device.type == "cuda")
    timer.lap("forward")
    score, groups, prob, pred = _score(cfg, state, main, aux, n_src)
    timer.lap("scoring")
    _, _, asked = bank.batch(batch.target_index)
    mask, group = select_queries(
        cfg,
        state,
        iteration,
        score[n_src:],
        groups[n_src:],
        prob,
        ~host_to_device(asked, device),
        spent(),
        generator,
    )
    timer.lap("selection")
    stats.queried, stats.answered = query_oracle(mask, group, score[n_src:], batch, bank, ask)
    stats.phase = group
    timer.lap("oracle")
    target = _bank_targets(bank, batch, mask, pred[n_src:], stats)
    loss = _segmentation_loss(
        cfg, main, aux, pred, batch, bank, groups[n_src:], n_src, generator, stats, target
    )
    timer.lap("seg_loss")
    if cfg.contrast or cfg.dccm:
        tgt_y = None if target is None else target[0]
        loss = loss + _contrast(
            cfg, out, main, pred, batch, bank, groups, state, generator, stats, tgt_y
        )
    timer.lap("contrast")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    timer.lap("backward")
    stats.raw_loss = loss.detach()
    stats.seconds = timer.seconds
    return stats


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


def _bank_targets(
    bank: LabelBank, batch: Batch, mask: torch.Tensor, pred: torch.Tensor, stats: StepStats
) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int]] | None:
    """The batch's labels and label groups from the bank after this step's answers (uint8
    across the bus, long on the device) and its labeled pixels from G_h / elsewhere (host ints);
    None for ``supervised``. Counts where the model was wrong at the asked pixels (a tensor)."""
    if batch.target_y is not None:
        return None
    labels, label_group, _ = bank.batch(batch.target_index, dtype=torch.uint8)
    device = batch.source_x.device
    target = (
        host_to_device(labels, device).long(),
        host_to_device(label_group, device).long(),
        bank.labeled_counts(batch.target_index),
    )
    if stats.answered:
        stats.raw_wrong = query_errors(mask, target[0], pred)
    return target


def _segmentation_loss(
    cfg: TrainConfig,
    main: torch.Tensor,
    aux: torch.Tensor,
    pred: torch.Tensor,
    batch: Batch,
    bank: LabelBank,
    tgroups: torch.Tensor,
    n_src: int,
    gen: torch.Generator,
    stats: StepStats,
    target: tuple[torch.Tensor, torch.Tensor, tuple[int, int]] | None = None,
) -> torch.Tensor:
    """Eq. 6: CE on source (+0.5 aux), Eq. 4 on labeled target pixels, Eq. 5 on G_l, and
    (``aux_target_loss``) 0.5 x CE of the aux head on the labeled target pixels.

    ``main``/``aux``: upsampled logits of every row. ``target``: the batch's (labels, label
    groups) from the bank, on ``main``'s device, and its labeled counts (G_h, other) when the
    caller already has them (then the loss needs no host sync). ``stats.raw`` gets detached
    0-dim tensors.
    """
    loss = source_loss(main[:n_src], aux[:n_src], batch.source_y)
    stats.raw["source"] = loss.detach()
    bound = None
    if batch.target_y is not None:  # the supervised ceiling: every target label
        labels = batch.target_y
        masks = {"medium": labels != IGNORE_INDEX}
        label_group = torch.full_like(labels, IGNORE_INDEX)
    else:
        if target is None:
            labels, label_group, _ = bank.batch(batch.target_index)
            target = (labels.to(main.device), label_group.to(main.device), None)
        labels, label_group, counts = target
        masks = target_masks(cfg, tgroups, labels, label_group, gen, counts)
        bound = target_pixel_bound(cfg, counts) if fixed_shapes(cfg, main.device) else None
    pseudo = pred[n_src:]
    tloss, parts = grouped_loss(
        main[n_src:], labels, pseudo, masks, equal_weight=cfg.adaptive_sampling, max_pixels=bound
    )
    stats.raw.update({f"target_{k}": v for k, v in parts.items()})
    if cfg.aux_target_loss:  # as on source: the aux head learns the target labels too
        aux_loss = 0.5 * cross_entropy(aux[n_src:], labels)
        stats.raw["target_aux"] = aux_loss.detach()
        tloss = tloss + aux_loss
    extra = regularisers.extra_loss(cfg, main, batch.source_y, n_src, stats.raw)  # MinEnt, RIPU
    return loss + cfg.target_weight * tloss + extra


def _contrast(
    cfg: TrainConfig,
    out: SegOutput,
    main: torch.Tensor,
    pred: torch.Tensor,
    batch: Batch,
    bank: LabelBank,
    groups: torch.Tensor,
    state: LoopState,
    gen: torch.Generator,
    stats: StepStats,
    tgt_y: torch.Tensor | None = None,
) -> torch.Tensor:
    """MCU losses (Eq. 9-11) weighted by the DCCM, which is updated first (Eq. 7-8).

    ``tgt_y``: the batch's target labels from the bank on ``main``'s device, if already loaded.
    ``stats.raw`` gets detached 0-dim tensors; fixed sizes (padded pixel sets), no host sync.
    The returned zero (contrast off) is not attached to ``main`` (no full-resolution gradient).
    """
    n_src, size = batch.source_x.shape[0], tuple(main.shape[-2:])
    num_classes = main.shape[1]
    if tgt_y is None:
        tgt_y = bank.batch(batch.target_index)[0].to(main.device)
    if cfg.dccm:
        labels = torch.cat([batch.source_y, tgt_y])
        rates, observed = confusion_rates(pred, labels, num_classes)
        dccm = host_to_device(state.dccm, rates.device)
        state.dccm = update_dccm(dccm, rates, cfg.dccm_beta, observed)
    if not cfg.contrast:
        return main.new_zeros(())
    sets = build_pixel_sets(
        out,
        n_src,
        batch.source_y,
        tgt_y,
        pred[n_src:],
        (groups[n_src:] == Group.LOW) & (not cfg.mcu_true_labels),
        groups[:n_src] == Group.LOW,
        pred,
        size,
        num_classes,
        cfg,
        gen,
        fixed_shapes(cfg, main.device),  # padded
    )
    stats.raw_inexact = False if sets.inexact is None else sets.inexact
    losses = mcu_loss(
        sets,
        MCUSettings.from_config(cfg, fixed_shapes(cfg, main.device)),
        num_classes=num_classes,
        weight=state.dccm if cfg.dccm else None,
        generator=gen,
        weight_bound=1.0,  # the DCCM starts at 0 and averages rates in [0, 1]
    )
    stats.raw.update({k: v.detach() for k, v in losses.items()})
    return cfg.contrast_weight * sum(losses.values(), main.new_zeros(()))
