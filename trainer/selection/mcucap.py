"""``mcu-cap``: Algorithm 1's groups without its measured failure modes (our own strategy).

docs/results.md measured two ways Algorithm 1 goes wrong on a short schedule: its high phase
takes half of G_h of a batch at once, so labels pile up on the few images with a large G_h
(the top 10 % of labeled images hold 46-60 % of the labels, random pixels: 15 %), and G_h
swells as the aux head drifts, so the number of queries per batch follows the drift (82 to
1,637). ``mcu-cap`` keeps the paper's split (M_e/2 from G_h in the first half of the window,
the rest from G_m) and replaces "half of G_h" by a paced quota with caps. Each switch is a
config field (defaults in :class:`CapSettings`, chosen before any target-val run):

- pacing (always on): the phase's budget spread evenly over its iterations left, the same
  per-iteration cap as the baselines;
- per image (always on): that quota split evenly over the batch's images
  (:func:`trainer.selection.baselines.image_quotas`), so no image takes more than its share;
- ``cap_class_share`` (0.25): at most this share of an image's quota per predicted class
  (1.0: no class cap), against labels piling on the classes the model is unsure of;
- ``cap_impurity`` (True): rank candidates by S (Eq. 1) x RIPU's region impurity, so the
  picks sit on predicted boundaries; False: uniform within the group, as Algorithm 1;
- ``cap_radius_k`` (16, RIPU's K at 1280x640, scaled as
  :func:`trainer.selection.ripu.scaled_radius`):
  greedy picks blank a window around them, as RIPU-PA does, this round and later ones;
  0: no window;
- ``mcu_true_labels`` (set by the strategy, read in ``trainer/loop/learn.py``): the MCUs take only
  true labels on the target, no G_l pseudo labels (the target-val ablation: pseudo labels of
  a weak source model cost 2-5 points); the strategy also turns pseudo labels off, except
  at budgets under ``cap_pseudo_below_rate`` of the target pixels
  (``trainer.strategies.for_budget``).

Candidates are the unasked pixels of the phase's group, then the rest of G_h u G_m, then any
unasked pixel (a group that runs dry never leaves the budget unspent). The class cap and the
windows hold for the first sweep of an image (:func:`trainer.selection.greedy.greedy_select`); what
it
cannot place goes to fresh sweeps without them, so the quota is always spent.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from trainer.constants import Group
from trainer.ops.draws import device_generator
from trainer.selection.baselines import image_quotas
from trainer.selection.greedy import greedy_select
from trainer.selection.ripu import blocked_by_asked, impurity, predicted, scaled_radius
from trainer.selection.views import BudgetView, Picked, Policy, ScoreMaps


@dataclass(frozen=True)
class CapSettings:
    """The switches of ``mcu-cap`` (config fields of the same names)."""

    cap_class_share: float = 0.25
    cap_impurity: bool = True
    cap_radius_k: float = 16.0


class McuCap(Policy):
    """``mcu-cap`` on a batch: Algorithm 1's phase (:meth:`BudgetView.phase`), its paced
    quota split over the batch's images, picked greedily with the caps of
    :class:`CapSettings`."""

    def __init__(self, settings: CapSettings) -> None:
        self.settings = settings

    def pick(
        self, maps: ScoreMaps, budget: BudgetView, generator: torch.Generator | None = None
    ) -> Picked:
        """(N,H,W) bool pixels to ask and the phase's group name: high while the phase is,
        at :meth:`BudgetView.high_paced` pixels; else medium at
        :meth:`BudgetView.medium_paced` (0 once the budget is spent)."""
        settings, score, prob, unasked = self.settings, maps.score, maps.prob, maps.unasked
        high = budget.phase() == "high"
        quota = budget.high_paced() if high else budget.medium_paced()
        n, h, w = unasked.shape
        quotas = image_quotas(quota, 1, n)
        radius = scaled_radius(settings.cap_radius_k, h, w)
        pred = predicted(prob)  # prob.argmax(1), without its slow reduction over classes
        if settings.cap_impurity:
            rank = score.float() * impurity(pred, prob.shape[1], 2 * max(radius, 1) + 1)
            rank = rank / rank.amax().clamp_min(1e-12)  # into [0, 1]
        else:
            gen = device_generator(generator, score.device)
            rank = torch.rand(score.shape, generator=gen, device=score.device)
        wanted = Group.HIGH if high else Group.MEDIUM
        rank = rank + 2.0 * (maps.groups == wanted) + 1.0 * (maps.groups != Group.LOW)
        eligible = unasked & ~blocked_by_asked(unasked, radius)
        caps = (quotas.float() * settings.cap_class_share).ceil().long().clamp(min=1)
        mask = greedy_select(rank, eligible, unasked, quotas, radius, 0, pred, caps)
        return Picked(mask, "high" if high else "medium")
