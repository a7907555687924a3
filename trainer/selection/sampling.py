"""Pixel selection: Algorithm 1 (footnote 3, the decay), RIPU's score and adaptive sampling.

Every selector returns a bool mask of shape (N, H, W) so that masks compose with ``&``, ``|``
and ``~``. Randomness only comes in through a ``torch.Generator``; the draws themselves are
in :mod:`trainer.ops.draws`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from trainer.constants import IGNORE_INDEX, Group
from trainer.ops.draws import top_k_select, uniform_select
from trainer.selection.views import BudgetView, Picked, Policy, ScoreMaps

if TYPE_CHECKING:
    from trainer.config import TrainConfig


@dataclass
class AlgorithmOneState:
    """The thresholds of Algorithm 1 on the scale of ``S`` (Eq. 1), and the decay ``r``.

    ``S = E/log(C) + gamma KL``: the entropy term lies in [0, 1]. Pixels with ``S > pi_high``
    form G_h, those with ``S < pi_low`` G_l, the rest G_m. The trainer starts both thresholds
    at quantiles of the first target batch's scores (:meth:`ActiveSampler.calibrate`, the
    config's ``pi_high_quantile`` / ``pi_low_quantile``), so the defaults here only serve a
    sampler that is never calibrated. ``pi_high`` decays by ``decay`` (r = 0.9) per epoch of
    the high phase (Alg. 1 line 7); this object is what a checkpoint saves.
    """

    pi_high: float = 0.95
    pi_low: float = 0.05
    decay: float = 0.9
    floor: bool = True  # pi_high never decays below pi_low (TrainConfig.pi_high_floor)


class ActiveSampler(Policy):
    """Algorithm 1 (lines 4-9) with footnote 3: query half of G_h until M_e/2, then G_m.

    The phase is :meth:`BudgetView.phase` (the budget split for integer pixel counts: the high
    phase owns ``M_e // 2`` pixels, the medium phase the rest plus whatever the high phase
    left unspent, so that every strategy spends the same M_e). The pixels spent per group come
    with the view (the server's budget, or the label bank), so this object only holds the
    thresholds.
    """

    def __init__(self, state: AlgorithmOneState | None = None) -> None:
        self.state = state if state is not None else AlgorithmOneState()

    def calibrate(
        self, score: torch.Tensor, high_quantile: float, low_quantile: float, seed: int = 0
    ) -> None:
        """Start ``pi_high`` / ``pi_low`` at quantiles of ``score`` (a target batch's S).

        The paper starts pi_high at "a large value" so that ~1 % of pixels fall in G_h; a
        quantile gives that on any domain and network without a hand-tuned absolute number.
        More than 100 000 scores (``torch.quantile``'s limit is 2^24; 100 000 keeps it fast)
        are subsampled uniformly by a generator of its own seeded with ``seed``, so the
        thresholds do not depend on torch's global random state.
        """
        flat = score.flatten().float()
        if flat.numel() > 100_000:
            gen = torch.Generator().manual_seed(seed)
            keep = torch.randperm(flat.numel(), generator=gen)[:100_000]
            flat = flat[keep.to(flat.device)]
        self.state.pi_high = float(torch.quantile(flat, high_quantile))
        self.state.pi_low = float(torch.quantile(flat, low_quantile))

    def pick(
        self, maps: ScoreMaps, budget: BudgetView, generator: torch.Generator | None = None
    ) -> Picked:
        """Pixels of a batch to query (Algorithm 1 lines 5-9).

        High (:meth:`BudgetView.phase`): ``ceil(|G_h ∩ unasked| / 2)`` pixels uniformly
        (footnote 3; the ceiling lets a lone pixel be queried), capped at ``M_e // 2 - M_a``,
        at the window's ``high_cap`` and at the view's cap; ``pi_high`` decays when the call
        ends a pass (``budget.epoch_end``). Medium: the rest of the budget spread evenly over
        the iterations left (:meth:`BudgetView.medium_paced`), uniformly from G_m, topped up
        from G_h when G_m runs dry, then from the highest scores left (under fixed thresholds
        a model that grows sure empties G_m and G_h). Done: empty.
        """
        phase = budget.phase()
        if phase == "high":
            candidates = (maps.groups == Group.HIGH) & maps.unasked
            k = min((int(candidates.sum()) + 1) // 2, budget.high_left())
            if budget.window is not None:
                k = min(k, budget.window.high_cap)
            mask = uniform_select(candidates, budget.capped(k), generator)
            if budget.epoch_end:
                self.end_epoch()
            return Picked(mask, "high")
        if phase == "done":
            return Picked(torch.zeros_like(maps.unasked), "done")
        return Picked(self._medium(maps, budget.medium_paced(), generator), "medium")

    @staticmethod
    def _medium(maps: ScoreMaps, quota: int, generator: torch.Generator | None) -> torch.Tensor:
        """``quota`` pixels from G_m, topped up from G_h, then from the highest scores."""
        unasked = maps.unasked
        mask = uniform_select((maps.groups == Group.MEDIUM) & unasked, quota, generator)
        short = quota - int(mask.sum())
        if short > 0:  # G_m ran dry (thresholds are state, scores move): top up from G_h
            mask |= uniform_select((maps.groups != Group.LOW) & unasked & ~mask, short, generator)
            short = quota - int(mask.sum())
        if short > 0:  # G_h too: the budget goes to the least sure pixels left
            mask |= top_k_select(maps.score, unasked & ~mask, short)
        return mask

    def end_epoch(self) -> float:
        """Decay ``pi_high *= decay`` (Alg. 1 line 7); with ``state.floor`` (ours,
        ``TrainConfig.pi_high_floor``) never below ``pi_low``, so G_h and G_l never overlap.
        Without it, as printed: ``pi_high`` keeps decaying, and where it falls below
        ``pi_low`` a pixel above ``pi_high`` is in G_h (:func:`partition`'s precedence)."""
        s = self.state
        s.pi_high = s.pi_high * s.decay
        if s.floor:
            s.pi_high = max(s.pi_low, s.pi_high)
        return s.pi_high


def adaptive_sample(
    groups: torch.Tensor,
    labeled: torch.Tensor,
    label_group: torch.Tensor,
    k: int | None,
    generator: torch.Generator | None = None,
    min_low: int = 0,
) -> dict[str, torch.Tensor]:
    """Adaptive sampling (III-B2): pixels of each group that enter the loss.

    Args:
        groups: (N, H, W) current group ids.
        labeled: (N, H, W) bool, pixels with a true label.
        label_group: (N, H, W) long, the group a labeled pixel was queried from,
            ``IGNORE_INDEX`` where unlabeled.
        k: pseudo-labelled pixels to draw; ``None`` means
            ``max(|high|, |medium|)``, or ``min_low`` when nothing is labeled.
        generator: source of randomness.
        min_low: pseudo-label count when ``k is None`` and the batch has no label; 0 (the
            default, ``pseudo_only_batches=False``): such a batch trains on no pseudo label.

    Returns:
        ``{"high", "medium", "low"}`` -> (N, H, W) bool masks. "high": labeled pixels
        queried from G_h; "medium": every other labeled pixel (queried from G_m, or of
        unknown origin: true labels are never dropped); "low": ``k`` pixels drawn
        uniformly from the current G_l that are not labeled. Labeled groups larger than
        ``k`` are kept whole: true labels are precious and few.
    """
    high = labeled & (label_group == Group.HIGH)
    medium = labeled & ~high
    if k is None:
        k = int(torch.maximum(high.sum(), medium.sum())) or min_low  # one host sync
    low = uniform_select((groups == Group.LOW) & ~labeled, k, generator)
    return {"high": high, "medium": medium, "low": low}


def _low_draw(cfg: TrainConfig, counts: tuple[int, int]) -> int:
    """AS's pseudo-label count from the batch's labeled pixels (G_h, other) counted on the
    host: the larger group, or ``min_low_samples`` for a pseudo-only batch when allowed."""
    min_low = cfg.min_low_samples if cfg.pseudo_only_batches else 0
    return max(counts) or min_low


def pseudo_open(cfg: TrainConfig, phase: str | None) -> bool:
    """Whether this batch may take G_l pseudo labels (Eq. 5 and the MCUs' target G_l), given
    the budget's phase before its queries (:meth:`BudgetView.phase`; ``None``: no asking this
    iteration, outside the query window or in a session). ``pseudo_after_budget`` (the paper's
    Algorithm 1 lines 11-12): only once the budget is spent (``"done"`` or no asking); False
    (ours): from the first batch on, next to the labels. ``cfg.pseudo_labels`` is apart."""
    return not cfg.pseudo_after_budget or phase in (None, "done")


def target_masks(
    cfg: TrainConfig,
    groups: torch.Tensor,
    labels: torch.Tensor,
    label_group: torch.Tensor,
    gen: torch.Generator,
    counts: tuple[int, int] | None = None,
    pseudo: bool = True,
) -> dict[str, torch.Tensor]:
    """Which target pixels enter Eq. 4-5: AS (equal counts per group), all of G_l, or none.

    Under AS a batch without a true label takes no pseudo label unless
    ``cfg.pseudo_only_batches`` (then ``cfg.min_low_samples`` of G_l). ``counts``: the batch's
    labeled pixels queried from G_h and from elsewhere, known on the host (the label bank);
    without them AS counts on the device (a host sync). ``pseudo``: :func:`pseudo_open`
    (False: no G_l pixel this batch)."""
    labeled = labels != IGNORE_INDEX
    if not cfg.pseudo_labels:
        return {"medium": labeled}
    if cfg.adaptive_sampling:
        min_low = cfg.min_low_samples if cfg.pseudo_only_batches else 0
        k = None if counts is None else _low_draw(cfg, counts)
        k = k if pseudo else 0
        return adaptive_sample(groups, labeled, label_group, k, gen, min_low)
    return {"medium": labeled, "low": (groups == Group.LOW) & ~labeled & pseudo}


def target_pixel_bound(
    cfg: TrainConfig, counts: tuple[int, int] | None, pseudo: bool = True
) -> int | None:
    """The most target pixels :func:`target_masks` selects, known on the host (labeled +
    AS's pseudo labels), or None where it is not (no counts, or all of G_l)."""
    if counts is None:
        return None
    if not cfg.pseudo_labels or not pseudo:
        return sum(counts)
    if cfg.adaptive_sampling:
        return sum(counts) + _low_draw(cfg, counts)
    return None
