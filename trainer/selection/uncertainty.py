"""Pixel-wise uncertainty (Eq. 1-3) and the three uncertainty groups (section III-B).

All functions are pure: tensors in, tensors out, no state, no I/O.
Shapes: ``N`` batch, ``C`` classes, ``H x W`` spatial size.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from trainer.constants import Group


def entropy(prob: torch.Tensor) -> torch.Tensor:
    """Normalised pixel-wise entropy (Eq. 2).

    Args:
        prob: class probabilities, shape (N, C, H, W), summing to 1 over ``C``.

    Returns:
        (N, H, W) entropy divided by ``log(C)``: 1 for a uniform distribution,
        0 for a one-hot one. For ``C == 1`` the entropy is 0 everywhere.
    """
    num_classes = prob.shape[1]
    if num_classes < 2:
        return prob.new_zeros(prob.shape[:1] + prob.shape[2:])
    # one class at a time: a reduction over the class dim of (N,C,H,W) is slow on the CPU
    # (0.053 -> 0.015 s at 512x1024, 19 classes, one thread); log of the clamped p keeps
    # 0 * log 0 == 0 (a probability that underflowed to 0)
    tiny = torch.finfo(prob.dtype).tiny
    plogp = prob.new_zeros(prob.shape[:1] + prob.shape[2:])
    for c in range(num_classes):
        p = prob[:, c]
        plogp.addcmul_(p, p.clamp_min(tiny).log())
    return -plogp / math.log(num_classes)


def uncertainty_score(
    main_logits: torch.Tensor, aux_logits: torch.Tensor, gamma: float = 0.5
) -> torch.Tensor:
    """Uncertainty score ``S = E(p) + gamma * KL(p || p_aux)`` (Eq. 1).

    Args:
        main_logits: logits of the main head, shape (N, C, H, W).
        aux_logits: logits of the auxiliary head (footnote 1), shape (N, C, H, W),
            already resized to the main head's size.
        gamma: weight of the KL term; the paper uses 0.5.

    Returns:
        (N, H, W) score; ``E`` lies in [0, 1] (Eq. 2), the KL term is unbounded above.
        Computed from log-softmax so that saturated logits stay finite.
    """
    log_p = F.log_softmax(main_logits, dim=1)
    log_q = F.log_softmax(aux_logits, dim=1)
    p = log_p.exp()
    num_classes = main_logits.shape[1]
    ent = -(p * log_p).sum(dim=1)
    ent = ent / math.log(num_classes) if num_classes > 1 else ent * 0.0
    kl = (p * (log_p - log_q)).sum(dim=1).clamp_min(0.0)
    return ent + gamma * kl


def partition(score: torch.Tensor, pi_high: float, pi_low: float) -> torch.Tensor:
    """Split pixels into uncertainty groups (section III-B).

    Args:
        score: (N, H, W) uncertainty scores (Eq. 1).
        pi_high: ``score > pi_high`` -> ``Group.HIGH`` (G_h).
        pi_low: ``score < pi_low`` -> ``Group.LOW`` (G_l); everything else, the
            thresholds themselves included, -> ``Group.MEDIUM`` (G_m).

    Returns:
        (N, H, W) uint8 group ids, one per pixel. Where the thresholds cross (``pi_high <
        pi_low``: Algorithm 1 line 7 without ``pi_high_floor``) a pixel with both
        ``score > pi_high`` and ``score < pi_low`` is in G_h: line 7 lowers pi_high to grow G_h.
    """
    groups = torch.full(score.shape, Group.MEDIUM, dtype=torch.uint8, device=score.device)
    groups[score < pi_low] = Group.LOW
    groups[score > pi_high] = Group.HIGH
    return groups
