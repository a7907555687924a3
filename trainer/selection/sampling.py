"""Pixel selection: Algorithm 1 (phases, footnote 3, the decay), RIPU and adaptive sampling.

Every selector returns a bool mask of shape (N, H, W) so that masks compose with ``&``, ``|``
and ``~``. Randomness only comes in through a ``torch.Generator``; the draws themselves are
in :mod:`trainer.ops.draws`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import torch
import torch.nn.functional as F

from trainer.constants import IGNORE_INDEX, Group
from trainer.ops.draws import uniform_select
from trainer.selection.uncertainty import entropy

if TYPE_CHECKING:
    from trainer.config import TrainConfig

Phase = Literal["high", "medium", "done"]


def region_impurity(pred: torch.Tensor, num_classes: int, kernel_size: int = 3) -> torch.Tensor:
    """Region impurity of RIPU (Xie et al., CVPR 2022).

    Args:
        pred: (N, H, W) long predicted classes in ``[0, num_classes)``.
        num_classes: ``C``.
        kernel_size: odd side ``k`` of the square neighbourhood; at the border only the
            pixels inside the image count.

    Returns:
        (N, H, W) entropy of the predicted-class histogram in the ``k x k``
        neighbourhood, divided by ``log(C)``: 0 in a pure region.
    """
    onehot = F.one_hot(pred.long(), num_classes).permute(0, 3, 1, 2).float()
    hist = F.avg_pool2d(
        onehot, kernel_size, stride=1, padding=kernel_size // 2, count_include_pad=False
    )
    return entropy(hist)


def ripu_score(
    prob: torch.Tensor, pred: torch.Tensor, num_classes: int, kernel_size: int = 3
) -> torch.Tensor:
    """RIPU pixel score: region impurity times normalised prediction entropy.

    Args:
        prob: (N, C, H, W) softmax probabilities.
        pred: (N, H, W) long predictions (usually ``prob.argmax(1)``).
        num_classes: ``C``.
        kernel_size: neighbourhood side for :func:`region_impurity`.

    Returns:
        (N, H, W) score in [0, 1].
    """
    return region_impurity(pred, num_classes, kernel_size) * entropy(prob)


def per_iteration_quota(remaining: int, iterations_left: int) -> int:
    """Pixels to spend this iteration: ``ceil(remaining / max(1, iterations_left))``.

    Clamped to ``[0, remaining]``; a negative ``remaining`` gives 0.
    """
    if remaining <= 0:
        return 0
    return min(remaining, math.ceil(remaining / max(1, iterations_left)))


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


@dataclass
class QueryWindow:
    """When Algorithm 1 queries, in iterations, and how much.

    ``expected``: the budget M_e in pixels. Queries are made in iterations
    ``[0, query_until)``; G_h may be queried in ``[0, high_until)``, at most ``high_cap``
    pixels an iteration, and ``pi_high`` decays at the end of every pass (``pass_length``
    iterations: one epoch over target-train, Algorithm 1's "each training epoch") there.
    """

    expected: int
    query_until: int
    high_until: int
    pass_length: int
    high_cap: int

    @staticmethod
    def plan(
        expected: int,
        iterations: int,
        pass_length: int,
        query_share: float,
        cap_factor: float = 2.0,
    ) -> QueryWindow:
        """The window of a run of ``iterations``: queries in the first ``query_share`` of them
        (``query_passes / passes``), the first half open to G_h. The high phase's cap spreads
        M_e/2 over that half: ``ceil(ceil(M_e/2 / high_until) * cap_factor)`` a batch."""
        query_until = max(1, round(iterations * query_share))
        high_until = max(1, query_until // 2)
        high_cap = max(1, math.ceil(math.ceil((expected // 2) / high_until) * cap_factor))
        return QueryWindow(expected, query_until, high_until, max(1, pass_length), high_cap)


class ActiveSampler:
    """Algorithm 1 (lines 4-9) with footnote 3: query half of G_h until M_e/2, then G_m.

    The budget split for integer pixel counts: the high phase owns ``M_e // 2`` pixels, the
    medium phase the rest, ``M_e - M_e // 2`` plus whatever the high phase left unspent, so
    that every strategy spends the same M_e. The pixels spent per group come from the caller
    (the server's budget, or the label bank), so this object only holds the thresholds.
    """

    def __init__(self, state: AlgorithmOneState | None = None) -> None:
        self.state = state if state is not None else AlgorithmOneState()

    @staticmethod
    def phase(expected: int, spent_high: int, spent_medium: int) -> Phase:
        """``"high"`` while ``M_a < M_e // 2``, then ``"medium"`` until the rest is spent."""
        if spent_high < expected // 2:
            return "high"
        if spent_medium < expected - expected // 2:
            return "medium"
        return "done"

    def calibrate(self, score: torch.Tensor, high_quantile: float, low_quantile: float) -> None:
        """Start ``pi_high`` / ``pi_low`` at quantiles of ``score`` (a target batch's S).

        The paper starts pi_high at "a large value" so that ~1 % of pixels fall in G_h; a
        quantile gives that on any domain and network without a hand-tuned absolute number.
        More than 100 000 scores are subsampled (torch's global generator).
        """
        flat = score.flatten().float()
        if flat.numel() > 100_000:
            flat = flat[torch.randperm(flat.numel(), device=flat.device)[:100_000]]
        self.state.pi_high = float(torch.quantile(flat, high_quantile))
        self.state.pi_low = float(torch.quantile(flat, low_quantile))

    def select(
        self,
        groups: torch.Tensor,
        unasked: torch.Tensor,
        iteration: int,
        window: QueryWindow,
        spent: dict[str, int],
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, Phase]:
        """Pixels of a batch to query at ``iteration`` (Algorithm 1 lines 5-9).

        Args:
            groups: (N, H, W) group ids from :func:`trainer.selection.uncertainty.partition`.
            unasked: (N, H, W) bool, pixels never queried before.
            iteration: the current iteration.
            window: the run's :class:`QueryWindow` (M_e, the phases' iterations, the cap).
            spent: pixels already spent per group (``"high"``, ``"medium"``, ...).
            generator: source of randomness.

        Returns:
            ``(mask, phase)``, mask (N, H, W) bool. High (while ``M_a < M_e // 2`` and
            ``iteration < high_until``): ``ceil(|G_h ∩ unasked| / 2)`` pixels uniformly
            (footnote 3; the ceiling lets a lone pixel be queried), capped at
            ``M_e // 2 - M_a`` and at ``window.high_cap``; ``pi_high`` decays at the end of
            each pass (the last iteration of each ``pass_length``). Medium: the rest
            of the budget spread evenly over the iterations left, uniformly from G_m, topped
            up from G_h when G_m runs dry. Done (``iteration >= query_until``): empty.
        """
        if iteration >= window.query_until:
            return torch.zeros_like(unasked, dtype=torch.bool), "done"
        high, medium = spent.get("high", 0), spent.get("medium", 0)
        if self.phase(window.expected, high, medium) == "high" and iteration < window.high_until:
            candidates = (groups == Group.HIGH) & unasked
            half = (int(candidates.sum()) + 1) // 2
            k = min(half, window.expected // 2 - high, window.high_cap)
            mask = uniform_select(candidates, k, generator)
            if iteration % window.pass_length == window.pass_length - 1:
                self.end_epoch()
            return mask, "high"
        # the medium phase, or the high phase ran past its share of the window: the rest of
        # the budget goes to G_m so that every strategy spends the same M_e
        left = window.query_until - max(iteration, window.high_until)
        quota = per_iteration_quota(window.expected - sum(spent.values()), max(1, left))
        mask = uniform_select((groups == Group.MEDIUM) & unasked, quota, generator)
        short = quota - int(mask.sum())
        if short > 0:  # G_m ran dry (thresholds are state, scores move): top up from G_h
            mask |= uniform_select((groups != Group.LOW) & unasked & ~mask, short, generator)
        return mask, "medium"

    def end_epoch(self) -> float:
        """Decay ``pi_high *= decay`` (Alg. 1 line 7), never below ``pi_low``."""
        s = self.state
        s.pi_high = max(s.pi_low, s.pi_high * s.decay)
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


def target_masks(
    cfg: TrainConfig,
    groups: torch.Tensor,
    labels: torch.Tensor,
    label_group: torch.Tensor,
    gen: torch.Generator,
    counts: tuple[int, int] | None = None,
) -> dict[str, torch.Tensor]:
    """Which target pixels enter Eq. 4-5: AS (equal counts per group), all of G_l, or none.

    Under AS a batch without a true label takes no pseudo label unless
    ``cfg.pseudo_only_batches`` (then ``cfg.min_low_samples`` of G_l). ``counts``: the batch's
    labeled pixels queried from G_h and from elsewhere, known on the host (the label bank);
    without them AS counts on the device (a host sync)."""
    labeled = labels != IGNORE_INDEX
    if not cfg.pseudo_labels:
        return {"medium": labeled}
    if cfg.adaptive_sampling:
        min_low = cfg.min_low_samples if cfg.pseudo_only_batches else 0
        k = None if counts is None else _low_draw(cfg, counts)
        return adaptive_sample(groups, labeled, label_group, k, gen, min_low)
    return {"medium": labeled, "low": (groups == Group.LOW) & ~labeled}


def target_pixel_bound(cfg: TrainConfig, counts: tuple[int, int] | None) -> int | None:
    """The most target pixels :func:`target_masks` selects, known on the host (labeled +
    AS's pseudo labels), or None where it is not (no counts, or all of G_l)."""
    if counts is None:
        return None
    if not cfg.pseudo_labels:
        return sum(counts)
    if cfg.adaptive_sampling:
        return sum(counts) + _low_draw(cfg, counts)
    return None
