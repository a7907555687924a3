"""The learning step: a batch's forward outputs and its labels from the label bank in, one
optimiser step on Eq. 4-6 plus the MCU losses (Eq. 9-11) weighted by the DCCM (Eq. 7-8) out.

It asks nothing and reads no budget: the asking half (:func:`trainer.loop.step.ask`) has
merged this iteration's answers into the bank before it runs.
"""

from __future__ import annotations

import torch

from trainer.config import McuLow, TrainConfig
from trainer.constants import IGNORE_INDEX, Group
from trainer.learning import regularisers
from trainer.learning.contrast import MCUSettings, mcu_loss
from trainer.learning.dccm import dccm_step
from trainer.learning.labelbank import LabelBank
from trainer.learning.losses import cross_entropy, grouped_loss, source_loss
from trainer.learning.metrics import query_errors
from trainer.learning.pixel_sets import PixelSetInputs, build_pixel_sets
from trainer.loop.bundles import Batch, Forward, Learner, fixed_shapes
from trainer.loop.stepstats import StepStats, Timer
from trainer.ops.draws import host_to_device
from trainer.selection.sampling import target_masks, target_pixel_bound


def learn(
    learner: Learner,
    fwd: Forward,
    batch: Batch,
    bank: LabelBank,
    stats: StepStats,
    asked: torch.Tensor | None = None,
    timer: Timer | None = None,
    pseudo: bool = True,
) -> StepStats:
    """The learning step: the batch's labels from the bank, Eq. 4-6 and the MCU losses
    (Eq. 9-11) with the DCCM (Eq. 7-8), one optimiser step. ``asked``: this iteration's
    queried pixels (where the model was wrong there goes to ``stats``); ``pseudo``: whether
    G_l pseudo labels are open (:func:`trainer.selection.sampling.pseudo_open`)."""
    cfg, timer = learner.cfg, timer or Timer(learner.sync)
    target = _bank_targets(bank, batch, fwd.pred[fwd.n_src :])
    if target is not None and stats.answered and asked is not None:
        stats.raw_wrong = query_errors(asked, target[0], fwd.pred[fwd.n_src :])
    loss, low = _segmentation_loss(learner, fwd, batch, bank, stats, target, pseudo)
    timer.lap("seg_loss")
    if cfg.contrast or cfg.dccm:
        tgt_y = None if target is None else target[0]
        mcu_low = mcu_target_low(cfg, fwd, low, pseudo)
        loss = loss + _contrast(learner, fwd, batch, bank, stats, tgt_y, mcu_low)
    timer.lap("contrast")
    learner.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    learner.optimizer.step()
    timer.lap("backward")
    stats.raw_loss = loss.detach()
    return stats


def _bank_targets(
    bank: LabelBank, batch: Batch, pred: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int]] | None:
    """The batch's labels and label groups from the bank after this step's answers (uint8
    across the bus, long on the device) and its labeled pixels from G_h / elsewhere (host ints);
    None for ``supervised``."""
    if batch.target_y is not None:
        return None
    labels, label_group, _ = bank.batch(batch.target_index, dtype=torch.uint8)
    device = batch.source_x.device
    return (
        host_to_device(labels, device).long(),
        host_to_device(label_group, device).long(),
        bank.labeled_counts(batch.target_index),
    )


def _segmentation_loss(
    learner: Learner,
    fwd: Forward,
    batch: Batch,
    bank: LabelBank,
    stats: StepStats,
    target: tuple[torch.Tensor, torch.Tensor, tuple[int, int]] | None = None,
    pseudo: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Eq. 6: CE on source (+0.5 aux), Eq. 4 on labeled target pixels, Eq. 5 on G_l, and
    (``aux_target_loss``) 0.5 x CE of the aux head on the labeled target pixels.

    ``target``: the batch's (labels, label groups) from the bank, on ``main``'s device, and its
    labeled counts (G_h, other) when the caller already has them (then the loss needs no host
    sync). ``stats.raw`` gets detached 0-dim tensors. Returns the loss and the G_l pixels
    that took pseudo labels (None: none, or the supervised ceiling).
    """
    cfg, gen = learner.cfg, learner.generator
    main, aux, n_src = fwd.main, fwd.aux, fwd.n_src
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
        masks = target_masks(cfg, fwd.groups[n_src:], labels, label_group, gen, counts, pseudo)
        pixels = fwd.groups[n_src:].numel()
        padded = fixed_shapes(cfg, main.device)
        bound = target_pixel_bound(cfg, counts, pixels, pseudo) if padded else None
    tloss, parts = grouped_loss(
        main[n_src:],
        labels,
        fwd.pred[n_src:],
        masks,
        equal_weight=cfg.adaptive_sampling,
        max_pixels=bound,
    )
    stats.raw.update({f"target_{k}": v for k, v in parts.items()})
    if cfg.aux_target_loss:  # as on source: the aux head learns the target labels too
        aux_loss = 0.5 * cross_entropy(aux[n_src:], labels)
        stats.raw["target_aux"] = aux_loss.detach()
        tloss = tloss + aux_loss
    extra = regularisers.extra_loss(cfg, main, batch.source_y, n_src, stats.raw)  # MinEnt, RIPU
    return loss + cfg.target_weight * tloss + extra, masks.get("low")


def mcu_target_low(
    cfg: TrainConfig, fwd: Forward, drawn: torch.Tensor | None, pseudo: bool
) -> torch.Tensor:
    """The target G_l pixels the MCUs take with pseudo labels (their p2p samples and class
    centres): none with ``mcu_true_labels`` or while pseudo labels are closed; every G_l pixel
    (``mcu_low_pixels = "all"``, ours) or the adaptive-sampling draw of Eq. 5 (``"sampled"``,
    III-D1: G_l^t is the pixels AS selected)."""
    low = fwd.groups[fwd.n_src :] == Group.LOW
    if cfg.mcu_true_labels or not pseudo:
        return torch.zeros_like(low)
    if cfg.mcu_low_pixels == McuLow.SAMPLED:
        return torch.zeros_like(low) if drawn is None else drawn
    return low


def _contrast(
    learner: Learner,
    fwd: Forward,
    batch: Batch,
    bank: LabelBank,
    stats: StepStats,
    tgt_y: torch.Tensor | None = None,
    target_low: torch.Tensor | None = None,
) -> torch.Tensor:
    """MCU losses (Eq. 9-11) weighted by the DCCM, which is updated first (Eq. 7-8).

    ``tgt_y``: the batch's target labels from the bank on ``main``'s device, if already loaded;
    ``target_low``: the target G_l pixels with pseudo labels (None: :func:`mcu_inputs`' default).
    ``stats.raw`` gets detached 0-dim tensors; fixed sizes (padded pixel sets), no host sync.
    The returned zero (contrast off) is not attached to ``main`` (no full-resolution gradient).
    """
    cfg, state, gen = learner.cfg, learner.state, learner.generator
    main, pred = fwd.main, fwd.pred
    num_classes, padded = main.shape[1], fixed_shapes(cfg, main.device)
    if tgt_y is None:
        tgt_y = bank.batch(batch.target_index)[0].to(main.device)
    if cfg.dccm:
        labels = torch.cat([batch.source_y, tgt_y])
        dccm = host_to_device(state.dccm, labels.device)
        state.dccm = dccm_step(dccm, pred, labels, cfg.dccm_beta, cfg.dccm_freeze_absent)
    if not cfg.contrast:
        return main.new_zeros(())
    inputs = mcu_inputs(cfg, fwd, batch.source_y, tgt_y, target_low)
    sets = build_pixel_sets(inputs, cfg, gen, padded)
    stats.raw_inexact = False if sets.inexact is None else sets.inexact
    losses = mcu_loss(
        sets,
        MCUSettings.from_config(cfg, padded),
        num_classes=num_classes,
        weight=state.dccm if cfg.dccm else None,
        generator=gen,
        weight_bound=1.0,  # the DCCM starts at 0 and averages rates in [0, 1]
    )
    stats.raw.update({k: v.detach() for k, v in losses.items()})
    return cfg.contrast_weight * sum(losses.values(), main.new_zeros(()))


def mcu_inputs(
    cfg: TrainConfig,
    fwd: Forward,
    source_y: torch.Tensor,
    target_y: torch.Tensor,
    target_low: torch.Tensor | None = None,
) -> PixelSetInputs:
    """What the MCUs are built from (III-C1): the batch's source labels, its target labels
    from the bank, and G_l as pseudo labels on target (``target_low``; None:
    :func:`mcu_target_low` with pseudo labels open) and as centres on both domains."""
    pred, groups, n_src = fwd.pred, fwd.groups, fwd.n_src
    return PixelSetInputs(
        out=fwd.out,
        n_src=n_src,
        source_y=source_y,
        target_y=target_y,
        target_pred=pred[n_src:],
        target_low=mcu_target_low(cfg, fwd, None, True) if target_low is None else target_low,
        source_low=groups[:n_src] == Group.LOW,
        pred=pred,
        size=(pred.shape[-2], pred.shape[-1]),
        num_classes=fwd.prob.shape[1],
    )
