"""Pixel selection: uniform / top-k pickers, RIPU, Algorithm 1 and adaptive sampling.

Every selector returns a bool mask of shape (N, H, W) so that masks compose with
``&``, ``|`` and ``~``. Randomness only comes in through a ``torch.Generator``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from trainer.uncertainty import GROUP_HIGH, GROUP_LOW, GROUP_MEDIUM, entropy

Phase = Literal["high", "medium", "done"]


def _randperm(n: int, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    gen_device = generator.device if generator is not None else torch.device("cpu")
    return torch.randperm(n, generator=generator, device=gen_device).to(device)


def uniform_select(
    candidates: torch.Tensor, k: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Choose ``min(k, candidates.sum())`` candidate pixels uniformly without replacement.

    Args:
        candidates: (N, H, W) bool, pixels that may be chosen.
        k: how many to choose (``k <= 0`` chooses none).
        generator: source of randomness.

    Returns:
        (N, H, W) bool mask, a subset of ``candidates``.
    """
    flat = candidates.reshape(-1)
    idx = flat.nonzero().squeeze(1)
    k = max(0, min(int(k), idx.numel()))
    chosen = idx[_randperm(idx.numel(), generator, idx.device)[:k]]
    mask = torch.zeros_like(flat, dtype=torch.bool)
    mask[chosen] = True
    return mask.view(candidates.shape)


def top_k_select(score: torch.Tensor, candidates: torch.Tensor, k: int) -> torch.Tensor:
    """Choose the ``min(k, candidates.sum())`` candidates with the highest score.

    Args:
        score: (N, H, W) float score (e.g. entropy or RIPU).
        candidates: (N, H, W) bool.
        k: how many to choose; ties are broken by ``torch.topk``.

    Returns:
        (N, H, W) bool mask, a subset of ``candidates``.
    """
    flat_c = candidates.reshape(-1)
    k = max(0, min(int(k), int(flat_c.sum())))
    masked = score.reshape(-1).float().masked_fill(~flat_c, float("-inf"))
    mask = torch.zeros_like(flat_c, dtype=torch.bool)
    if k > 0:
        mask[torch.topk(masked, k).indices] = True
    return mask.view(candidates.shape)


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
    """Thresholds of Algorithm 1, on the scale of ``S`` from Eq. 1.

    ``S = E/log(C) + 0.5 KL``: the entropy term lies in [0, 1]. ``pi_high = 0.95``
    starts with almost no pixel in G_h (the paper's "large value", ~1 % of pixels)
    and decays by ``decay`` (r = 0.9) per epoch; ``pi_low = 0.05`` keeps in G_l only
    pixels whose top class has probability of about 0.98 or more (19 classes), the
    confident pixels used for pseudo labels and class centres.
    """

    pi_high: float = 0.95
    pi_low: float = 0.05
    decay: float = 0.9


class ActiveSampler:
    """Algorithm 1 with footnote 3: query half of G_h until M_e/2, then G_m, then stop.

    The budget split for integer pixel counts: the high phase owns ``M_e // 2``
    pixels, the medium phase owns ``M_e - M_e // 2`` (the odd pixel goes to G_m).
    The counts ``spent_high`` / ``spent_medium`` come from the caller (the server's
    budget), so this object only holds the thresholds.
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

    def select(
        self,
        groups: torch.Tensor,
        unlabeled: torch.Tensor,
        expected: int,
        spent_high: int,
        spent_medium: int,
        medium_quota: int,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, Phase]:
        """Pixels to query for this batch.

        Args:
            groups: (N, H, W) group ids from :func:`trainer.uncertainty.partition`.
            unlabeled: (N, H, W) bool, pixels never queried before.
            expected: ``M_e``, the whole budget in pixels.
            spent_high, spent_medium: pixels already queried in each phase.
            medium_quota: pixels to query per batch in the medium phase
                (e.g. :func:`per_iteration_quota`).
            generator: source of randomness.

        Returns:
            ``(mask, phase)``: (N, H, W) bool mask of pixels to query and the phase.
            High: ``ceil(|G_h ∩ unlabeled| / 2)`` pixels uniformly (footnote 3; the
            ceiling lets a lone pixel be queried), capped at ``M_e // 2 - spent_high``.
            Medium: ``min(medium_quota, remaining)`` pixels of ``G_m ∩ unlabeled``.
            Done: an empty mask.
        """
        phase = self.phase(expected, spent_high, spent_medium)
        if phase == "high":
            candidates = (groups == GROUP_HIGH) & unlabeled
            k = min((int(candidates.sum()) + 1) // 2, expected // 2 - spent_high)
        elif phase == "medium":
            candidates = (groups == GROUP_MEDIUM) & unlabeled
            k = min(medium_quota, expected - expected // 2 - spent_medium)
        else:
            return torch.zeros_like(unlabeled, dtype=torch.bool), phase
        return uniform_select(candidates, k, generator), phase

    def end_epoch(self) -> float:
        """Decay ``pi_high *= decay`` (Alg. 1 line 7), never below ``pi_low``.

        Algorithm 1 decays only while ``M_a < M_e / 2``: call it in the high phase.
        """
        s = self.state
        s.pi_high = max(s.pi_low, s.pi_high * s.decay)
        return s.pi_high


def adaptive_sample(
    groups: torch.Tensor,
    labeled: torch.Tensor,
    label_group: torch.Tensor,
    k: int | None,
    generator: torch.Generator | None = None,
    min_low: int = 64,
) -> dict[str, torch.Tensor]:
    """Adaptive sampling (III-B2): pixels of each group that enter the loss.

    Args:
        groups: (N, H, W) current group ids.
        labeled: (N, H, W) bool, pixels with a true label.
        label_group: (N, H, W) long, the group a labeled pixel was queried from,
            255 where unlabeled.
        k: pseudo-labelled pixels to draw; ``None`` means
            ``max(|high|, |medium|)``, or ``min_low`` when nothing is labeled.
        generator: source of randomness.
        min_low: pseudo-label count when ``k is None`` and the batch has no label.

    Returns:
        ``{"high", "medium", "low"}`` -> (N, H, W) bool masks. "high": labeled pixels
        queried from G_h; "medium": every other labeled pixel (queried from G_m, or of
        unknown origin: true labels are never dropped); "low": ``k`` pixels drawn
        uniformly from the current G_l that are not labeled. Labeled groups larger than
        ``k`` are kept whole: true labels are precious and few.
    """
    high = labeled & (label_group == GROUP_HIGH)
    medium = labeled & ~high
    if k is None:
        k = max(int(high.sum()), int(medium.sum())) or min_low
    low = uniform_select((groups == GROUP_LOW) & ~labeled, k, generator)
    return {"high": high, "medium": medium, "low": low}
