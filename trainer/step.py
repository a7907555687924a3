"""One ADA-MCU iteration (Algorithm 1, lines 5-16), built from the pure pieces.

``adaptation_step`` runs one forward pass over 2 source + 2 target images, scores the target
pixels (Eq. 1-3), selects the pixels to query (Algorithm 1 or a baseline), asks the oracle,
merges its answers into the label bank, and optimises Eq. 6 plus the MCU losses (Eq. 9-11)
weighted by the DCCM (Eq. 7-8). Every strategy is a configuration of this one function.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from trainer.config import TrainConfig
from trainer.contrast import PixelBatch, mcu_loss
from trainer.dccm import confusion_rates, update_dccm
from trainer.labelbank import IGNORE, LabelBank
from trainer.losses import grouped_loss, source_loss
from trainer.model import SegOutput
from trainer.sampling import (
    ActiveSampler,
    adaptive_sample,
    per_iteration_quota,
    ripu_score,
    sample_per_group,
    top_k_select,
    uniform_select,
)
from trainer.uncertainty import GROUP_LOW, GROUP_MEDIUM, partition, uncertainty_score

# ask(index (K,), ys (K,), xs (K,), group, scores (K,)) -> classes (K,) long, 255 = no answer
Ask = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, str, torch.Tensor], torch.Tensor]
# spent() -> pixels already spent per group ({"high": n, "medium": n, ...})
Spent = Callable[[], dict[str, int]]


@dataclass
class Batch:
    """source_x (Bs,3,H,W) float, source_y (Bs,H,W) long (255 ignore), target_x (Bt,3,H,W)
    float, target_index (Bt,) long: rows of the target images in the label bank."""

    source_x: torch.Tensor
    source_y: torch.Tensor
    target_x: torch.Tensor
    target_index: torch.Tensor
    target_y: torch.Tensor | None = None  # only for the fully supervised ceiling


@dataclass
class LoopState:
    """What persists across iterations besides the network: thresholds, DCCM, the window."""

    sampler: ActiveSampler
    dccm: torch.Tensor
    expected: int
    query_until: int
    high_until: int
    decay_every: int
    calibrated: bool = False


@dataclass
class StepStats:
    loss: float = 0.0
    parts: dict[str, float] = field(default_factory=dict)
    queried: int = 0
    answered: int = 0
    phase: str = ""
    seconds: dict[str, float] = field(default_factory=dict)


class _Timer:
    def __init__(self, sync: Callable[[], None]) -> None:
        self.sync, self.seconds, self._t = sync, {}, time.perf_counter()

    def lap(self, name: str) -> None:
        self.sync()
        now = time.perf_counter()
        self.seconds[name] = self.seconds.get(name, 0.0) + now - self._t
        self._t = now


def upsample(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(N,C,h,w) -> (N,C,H,W) bilinear, as the field evaluates."""
    if tuple(logits.shape[-2:]) == tuple(size):
        return logits
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)


def calibrate_thresholds(state: LoopState, score: torch.Tensor, cfg: TrainConfig) -> None:
    """Start pi_high / pi_low at quantiles of the first target batch's scores.

    The paper starts pi_high at "a large value" so that ~1% of pixels fall in G_h; a quantile
    gives that on any domain and network without a hand-tuned absolute number.
    """
    flat = score.flatten().float()
    if flat.numel() > 100_000:
        flat = flat[torch.randperm(flat.numel(), device=flat.device)[:100_000]]
    state.sampler.state.pi_high = float(torch.quantile(flat, cfg.pi_high_quantile))
    state.sampler.state.pi_low = float(torch.quantile(flat, cfg.pi_low_quantile))
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
    """Pixels of the target batch to ask about: (B,H,W) bool mask and its group name."""
    empty = torch.zeros_like(unasked)
    if cfg.selection in ("none", "all") or iteration >= state.query_until:
        return empty, "none"
    total = sum(spent.values())
    remaining = state.expected - total
    iters_left = state.query_until - iteration
    quota = per_iteration_quota(remaining, iters_left)
    if cfg.selection == "random":
        return uniform_select(unasked, quota, generator), "random"
    if cfg.selection == "entropy":
        return top_k_select(score, unasked, quota), "entropy"
    if cfg.selection == "ripu":
        pred = prob.argmax(1)
        return top_k_select(ripu_score(prob, pred, prob.shape[1]), unasked, quota), "ripu"
    high, medium = spent.get("high", 0), spent.get("medium", 0)
    if state.sampler.phase(state.expected, high, medium) == "high":
        if iteration < state.high_until:
            mask, _ = state.sampler.select(
                groups, unasked, state.expected, high, medium, 0, generator
            )
            if iteration % state.decay_every == state.decay_every - 1:
                state.sampler.end_epoch()
            return mask, "high"
    # medium phase, or the high phase ran past its share of the window: the rest of the
    # budget goes to G_m so that every strategy spends the same M_e (a documented decision).
    med_left = state.query_until - max(iteration, state.high_until)
    quota = per_iteration_quota(remaining, max(1, med_left))
    mask = uniform_select((groups == GROUP_MEDIUM) & unasked, quota, generator)
    short = quota - int(mask.sum())
    if short > 0:  # G_m ran dry (thresholds are state, scores move): top up from G_h
        mask |= uniform_select((groups != GROUP_LOW) & unasked & ~mask, short, generator)
    return mask, "medium"


def query_oracle(
    mask: torch.Tensor,
    group: str,
    score: torch.Tensor,
    batch: Batch,
    bank: LabelBank,
    ask: Ask,
) -> tuple[int, int]:
    """Ask the oracle about the masked pixels and merge the answers. Returns (asked, answered)."""
    b, ys, xs = mask.nonzero(as_tuple=True)
    if b.numel() == 0:
        return 0, 0
    index = batch.target_index[b.cpu()]
    ys, xs = ys.cpu(), xs.cpu()
    classes = ask(index, ys, xs, group, score[b, ys, xs].float().cpu())
    answered = bank.merge(index, ys, xs, classes, group)
    return int(b.numel()), answered


def gather_embeddings(
    emb: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor, size: tuple[int, int]
) -> torch.Tensor:
    """Bilinear embeddings (P,D) of one image's map emb (D,h,w) at full-res pixels (P,)."""
    image = torch.zeros_like(ys)
    return F.normalize(gather_batch_embeddings(emb[None], image, ys, xs, size), dim=1)


def gather_batch_embeddings(
    emb: torch.Tensor,
    image: torch.Tensor,
    ys: torch.Tensor,
    xs: torch.Tensor,
    size: tuple[int, int],
) -> torch.Tensor:
    """Bilinear embeddings (P,D) of the maps emb (B,D,h,w) at full-res pixels (P,) of images
    image (P,), not normalised (the MCU losses normalise).

    One grid_sample call: the maps are stacked vertically with a zero row after each, so a
    sample near an image's edge reads zeros there, as grid_sample's zero padding does.
    """
    n, d, h, w = emb.shape
    stacked = F.pad(emb, (0, 0, 0, 1)).transpose(0, 1).reshape(1, d, n * (h + 1), w)
    gx = (xs.float() + 0.5) / size[1] * 2 - 1
    # y in the input's pixel units (align_corners=False), moved to its image's slot
    py = (ys.float() + 0.5) / size[0] * h - 0.5 + image * (h + 1)
    gy = (2 * py + 1) / (n * (h + 1)) - 1
    grid = torch.stack([gx, gy], dim=-1).view(1, 1, -1, 2).to(emb.dtype)
    out = F.grid_sample(stacked, grid, mode="bilinear", align_corners=False)  # (1, D, 1, P)
    return out[0, :, 0].t().float()


def build_pixel_sets(
    out: SegOutput,
    n_src: int,
    src_y: torch.Tensor,
    tgt_y: torch.Tensor,
    pseudo: torch.Tensor,
    low_mask: torch.Tensor,
    src_low: torch.Tensor,
    pred: torch.Tensor,
    size: tuple[int, int],
    num_classes: int,
    cfg: TrainConfig,
    gen: torch.Generator,
) -> PixelBatch:
    """Pixels of the MCUs (III-C), all images at once: source anchors are misclassified source
    pixels, target anchors misclassified labeled pixels; centres come from G_l (pseudo labels
    on target). Candidates are every labelled (or pseudo-labelled) pixel, capped at
    ``2 * max_samples_per_class`` per image and class, plus the anchors: misclassified
    candidates capped at ``max_anchors_per_class`` per image and true class. Both caps are
    independent uniform draws without replacement within each (image, class).

    Labels are expected in ``[0, 255)`` (255: none). At full resolution (millions of labelled
    pixels) only element-wise passes touch every pixel: :func:`sample_per_group` thins the
    candidates before it sorts, so the sort sees O(images * classes * cap) pixels."""
    valid = torch.cat([src_y != IGNORE, tgt_y != IGNORE])  # true labels
    low = low_mask & (tgt_y == IGNORE)
    label = torch.cat([src_y, torch.where(low, pseudo, tgt_y)])
    lab = label.reshape(-1)
    per_image = size[0] * size[1]
    image_id = torch.arange(label.shape[0], device=label.device).view(-1, 1, 1)
    group = (image_id * 256 + label.clamp(0, 255)).reshape(-1)
    pick = (lab >= 0) & (lab < IGNORE)
    wrong = valid.reshape(-1) & (pred.reshape(-1) != lab) & (lab >= 0) & (lab < num_classes)
    idx, (_, anchor) = sample_per_group(
        group,
        [pick, wrong],
        [2 * cfg.max_samples_per_class, cfg.max_anchors_per_class],
        label.shape[0] * 256,
        gen,
    )
    center = torch.cat([src_low & (src_y != IGNORE), low]).reshape(-1)[idx]
    image = torch.div(idx, per_image, rounding_mode="floor")
    pix = idx - image * per_image
    ys, xs = torch.div(pix, size[1], rounding_mode="floor"), pix % size[1]
    return PixelBatch(
        emb=gather_batch_embeddings(out.embedding, image, ys, xs, size),
        label=lab[idx],
        anchor=anchor,
        center=center,
        image=image,
        domains=[0] * n_src + [1] * tgt_y.shape[0],
    )


def target_masks(
    cfg: TrainConfig,
    groups: torch.Tensor,
    labels: torch.Tensor,
    label_group: torch.Tensor,
    gen: torch.Generator,
) -> dict[str, torch.Tensor]:
    """Which target pixels enter Eq. 4-5: AS (equal counts per group), all of G_l, or none."""
    labeled = labels != IGNORE
    if not cfg.pseudo_labels:
        return {"medium": labeled}
    if cfg.adaptive_sampling:
        return adaptive_sample(groups, labeled, label_group, None, gen, cfg.min_low_samples)
    return {"medium": labeled, "low": (groups == GROUP_LOW) & ~labeled}


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
    size = tuple(batch.source_x.shape[-2:])
    model.train()
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=_amp(cfg, device)):
        out = model(torch.cat([batch.source_x, batch.target_x]))
    main = upsample(out.main.float(), size)
    timer.lap("forward")
    with torch.no_grad():
        score = uncertainty_score(main, upsample(out.aux.float(), size), cfg.gamma)
        if not state.calibrated:
            calibrate_thresholds(state, score[n_src:], cfg)
        s = state.sampler.state
        groups = partition(score, s.pi_high, s.pi_low)
        prob = main[n_src:].softmax(1)
        pred = main.detach().max(1).indices  # (B,H,W) argmax (faster): pseudo labels, anchors, DCCM
    timer.lap("scoring")
    _, _, asked = bank.batch(batch.target_index)
    mask, group = select_queries(
        cfg,
        state,
        iteration,
        score[n_src:],
        groups[n_src:],
        prob,
        ~asked.to(device),
        spent(),
        generator,
    )
    timer.lap("selection")
    stats.queried, stats.answered = query_oracle(mask, group, score[n_src:], batch, bank, ask)
    stats.phase = group
    timer.lap("oracle")
    target = None
    if batch.target_y is None:  # the bank after this step's answers, copied once
        # uint8 across the bus, widened to long on the device
        labels, label_group, _ = bank.batch(batch.target_index, dtype=torch.uint8)
        target = (labels.to(device).long(), label_group.to(device).long())
    loss = _segmentation_loss(
        cfg, out, main, pred, batch, bank, groups[n_src:], n_src, generator, stats, target
    )
    timer.lap("seg_loss")
    if cfg.contrast or cfg.dccm:
        loss = loss + _contrast(
            cfg,
            out,
            main,
            pred,
            batch,
            bank,
            groups,
            state,
            generator,
            stats,
            None if target is None else target[0],
        )
    timer.lap("contrast")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    timer.lap("backward")
    _parts_to_floats(stats, loss)
    stats.seconds = timer.seconds
    return stats


def _parts_to_floats(stats: StepStats, loss: torch.Tensor) -> None:
    """The helpers leave detached tensors in ``stats.parts``: one host copy for all of them."""
    keys = list(stats.parts)
    values = torch.stack(
        [
            torch.as_tensor(stats.parts[k], dtype=torch.float32, device=loss.device).reshape(())
            for k in keys
        ]
        + [loss.detach().float()]
    ).tolist()
    stats.parts = dict(zip(keys, values[:-1], strict=True))
    stats.loss = values[-1]


def _amp(cfg: TrainConfig, device: torch.device) -> bool:
    return cfg.amp and device.type == "cuda"


def _segmentation_loss(
    cfg: TrainConfig,
    out: SegOutput,
    main: torch.Tensor,
    pred: torch.Tensor,
    batch: Batch,
    bank: LabelBank,
    tgroups: torch.Tensor,
    n_src: int,
    gen: torch.Generator,
    stats: StepStats,
    target: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Eq. 6: CE on source (+0.5 aux), Eq. 4 on labeled target pixels, Eq. 5 on G_l.

    ``target``: the batch's (labels, label groups) from the bank, on ``main``'s device, when the
    caller already has them. ``stats.parts`` gets detached 0-dim tensors (no host sync here).
    """
    size = main.shape[-2:]
    loss = source_loss(main[:n_src], upsample(out.aux[:n_src].float(), size), batch.source_y)
    stats.parts["source"] = loss.detach()
    if batch.target_y is not None:  # the supervised ceiling: every target label
        labels = batch.target_y
        masks = {"medium": labels != IGNORE}
        label_group = torch.full_like(labels, IGNORE)
    else:
        if target is None:
            labels, label_group, _ = bank.batch(batch.target_index)
            target = (labels.to(main.device), label_group.to(main.device))
        labels, label_group = target
        masks = target_masks(cfg, tgroups, labels, label_group, gen)
    pseudo = pred[n_src:]
    tloss, parts = grouped_loss(
        main[n_src:], labels, pseudo, masks, equal_weight=cfg.adaptive_sampling
    )
    stats.parts.update({f"target_{k}": v for k, v in parts.items()})
    return loss + cfg.target_weight * tloss


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
    ``stats.parts`` gets detached 0-dim tensors. The returned zero (contrast off) is not
    attached to ``main``, so it adds no full-resolution zero gradient.
    """
    n_src, size = batch.source_x.shape[0], tuple(main.shape[-2:])
    num_classes = main.shape[1]
    if tgt_y is None:
        tgt_y = bank.batch(batch.target_index)[0].to(main.device)
    if cfg.dccm:
        labels = torch.cat([batch.source_y, tgt_y])
        rates, observed = confusion_rates(pred, labels, num_classes)
        state.dccm = update_dccm(state.dccm.to(rates.device), rates, cfg.dccm_beta, observed)
    if not cfg.contrast:
        return main.new_zeros(())
    sets = build_pixel_sets(
        out,
        n_src,
        batch.source_y,
        tgt_y,
        pred[n_src:],
        groups[n_src:] == GROUP_LOW,
        groups[:n_src] == GROUP_LOW,
        pred,
        size,
        num_classes,
        cfg,
        gen,
    )
    losses = mcu_loss(
        sets,
        intra=cfg.contrast_intra,
        cross_image=cfg.contrast_cross_image,
        cross_domain=cfg.contrast_cross_domain,
        p2p=cfg.p2p,
        c2c=cfg.c2c,
        temperature=cfg.temperature,
        weight=state.dccm if cfg.dccm else None,
        weight_mode=cfg.weight_mode if cfg.dccm else "none",
        num_classes=num_classes,
        max_anchors_per_class=cfg.max_anchors_per_class,
        max_samples_per_class=cfg.max_samples_per_class,
        generator=gen,
    )
    stats.parts.update({k: v.detach() for k, v in losses.items()})
    return cfg.contrast_weight * sum(losses.values(), main.new_zeros(()))
