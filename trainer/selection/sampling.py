"""Pixel selection: Algorithm 1 (footnote 3, the decay), RIPU's score and adaptive sampling.

Every selector returns a bool mask of shape (N, H, W) so that masks compose with ``&``, ``|``
and ``~``. Randomness only comes in through a ``torch.Generator``; the draws themselves are
in :mod:`trainer.ops.draws`.
"""

from __future__ import annotations

import math
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


# The most extra decays of pi_high in one visit (``catch_up``): a guard only (0.9^64 is
# 0.1 %); the bound that acts is pi_low, where G_h holds every pixel outside G_l.
MAX_CATCH_UP_DECAYS = 64


class ActiveSampler(Policy):
    """Algorithm 1 (lines 4-9) with footnote 3: query half of G_h until M_e/2, then G_m.

    The phase is :meth:`BudgetView.phase` (the budget split for integer pixel counts: the high
    phase owns ``M_e // 2`` pixels, the medium phase the rest plus whatever the high phase
    left unspent, so that every strategy spends the same M_e). The pixels spent per group come
    with the view (the server's budget, or the label bank), so this object only holds the
    thresholds.

    ``catch_up`` (the config's ``high_catch_up``; True is the paper's reading): inside a
    query window, a visit whose half of G_h cannot supply its share of the high phase
    (:meth:`high_want`) decays ``pi_high`` again (Alg. 1 line 7, "until M_a achieves
    M_e/2") until it can, or until ``pi_high`` reaches ``pi_low``
    (:data:`MAX_CATCH_UP_DECAYS` at most). False: ``pi_high`` decays once per pass only, and
    what G_h cannot supply in the high window moves to G_m. A session's rounds have no window
    (its high phase lasts until M_e/2 is spent), so they decay once per pass either way.
    """

    def __init__(self, state: AlgorithmOneState | None = None, catch_up: bool = True) -> None:
        self.state = state if state is not None else AlgorithmOneState()
        self.catch_up = catch_up

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
        ends a pass (``budget.epoch_end``), and before the draw while G_h is short of the
        visit's share (``catch_up``, :meth:`_caught_up`). Medium: the rest of the budget spread
        evenly over the iterations left (:meth:`BudgetView.medium_paced`), uniformly from G_m,
        topped up from G_h when G_m runs dry, then from the highest scores left (under fixed
        thresholds a model that grows sure empties G_m and G_h). Done: empty.
        """
        phase = budget.phase()
        if phase == "high":
            candidates = (maps.groups == Group.HIGH) & maps.unasked
            if self.catch_up and budget.window is not None:
                candidates, count = self._caught_up(maps, candidates, self.high_want(budget))
            else:
                count = int(candidates.sum())
            k = min((count + 1) // 2, budget.high_left())
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
    def high_want(budget: BudgetView) -> int:
        """The high phase's share of this visit: ``M_e // 2 - M_a`` spread over the high
        iterations left (:meth:`BudgetView.high_paced`), within the window's ``high_cap``."""
        want = budget.high_paced()
        return want if budget.window is None else min(want, budget.window.high_cap)

    def _caught_up(
        self, maps: ScoreMaps, candidates: torch.Tensor, want: int
    ) -> tuple[torch.Tensor, int]:
        """G_h ∩ unasked and its size after decaying ``pi_high *= decay`` while half of it is
        under ``want``, never below ``pi_low`` (there G_h is every pixel outside G_l). The
        groups of ``maps`` were made with the old ``pi_high``, so S is compared again: every
        rung of the decay ladder is counted at once (one copy to the host)."""
        s, ladder = self.state, [self.state.pi_high]
        while len(ladder) <= MAX_CATCH_UP_DECAYS:
            lowered = max(s.pi_low, ladder[-1] * s.decay)
            if lowered >= ladder[-1]:
                break
            ladder.append(lowered)
        score = maps.score.flatten()
        rest = torch.where((maps.unasked & ~candidates).flatten(), score, float("-inf"))
        rising = torch.tensor(ladder[::-1], dtype=score.dtype, device=score.device)
        below = torch.bucketize(rest, rising)  # rungs under each pixel's S (strictly)
        per = torch.bincount(below, minlength=len(ladder) + 1)
        above = per.flip(0).cumsum(0)[: len(ladder)]  # rung j (from pi_high down): S > t_j
        counts = (above + candidates.sum()).tolist()
        rung = next((j for j, n in enumerate(counts) if (n + 1) // 2 >= want), len(ladder) - 1)
        if rung == 0:
            return candidates, counts[0]
        s.pi_high = ladder[rung]
        return candidates | ((maps.score > s.pi_high) & maps.unasked), counts[rung]

    @staticmethod
    def _medium(maps: ScoreMaps, quota: int, generator: torch.Generator | None) -> torch.Tensor:
        """``quota`` pixels from G_m, topped up from G_h, then from the highest scores (the
        groups' sizes counted at once: one copy to the host)."""
        unasked = maps.unasked
        medium = (maps.groups == Group.MEDIUM) & unasked
        above_low = (maps.groups != Group.LOW) & unasked
        n_medium, n_above = torch.stack([medium.sum(), above_low.sum()]).tolist()
        mask = uniform_select(medium, quota, generator)
        short = quota - min(quota, n_medium)
        if short > 0:  # G_m ran dry (thresholds are state, scores move): top up from G_h
            mask |= uniform_select(above_low & ~mask, short, generator)
            short -= min(short, n_above - n_medium)
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


def min_low(cfg: TrainConfig, pixels: int) -> int:
    """G_l pixels of a batch without a true label: ``ceil(min_low_share x pixels)`` (the
    batch's target pixels) when ``cfg.pseudo_only_batches``, else 0."""
    return math.ceil(cfg.min_low_share * pixels) if cfg.pseudo_only_batches else 0


def _low_draw(cfg: TrainConfig, counts: tuple[int, int], pixels: int) -> int:
    """AS's pseudo-label count from the batch's labeled pixels (G_h, other) counted on the
    host: the larger group, or :func:`min_low` for a pseudo-only batch when allowed."""
    return max(counts) or min_low(cfg, pixels)


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
    ``cfg.pseudo_only_batches`` (then :func:`min_low` of G_l). ``counts``: the batch's
    labeled pixels queried from G_h and from elsewhere, known on the host (the label bank);
    without them AS counts on the device (a host sync). ``pseudo``: :func:`pseudo_open`
    (False: no G_l pixel this batch)."""
    labeled = labels != IGNORE_INDEX
    if not cfg.pseudo_labels:
        return {"medium": labeled}
    if cfg.adaptive_sampling:
        floor = min_low(cfg, groups.numel())
        k = None if counts is None else _low_draw(cfg, counts, groups.numel())
        k = k if pseudo else 0
        return adaptive_sample(groups, labeled, label_group, k, gen, floor)
    return {"medium": labeled, "low": (groups == Group.LOW) & ~labeled & pseudo}


def target_pixel_bound(
    cfg: TrainConfig, counts: tuple[int, int] | None, pixels: int, pseudo: bool = True
) -> int | None:
    """The most target pixels :func:`target_masks` selects, known on the host (labeled +
    AS's pseudo labels; ``pixels``: the batch's target pixels), or None where it is not (no
    counts, or all of G_l)."""
    if counts is None:
        return None
    if not cfg.pseudo_labels or not pseudo:
        return sum(counts)
    if cfg.adaptive_sampling:
        return sum(counts) + _low_draw(cfg, counts, pixels)
    return None
