"""Region queries (issue 24): the strategies lifted from pixels to superpixels.

A region query asks a person the dominant class of one superpixel (``trainer/data/
superpixels.py``) in one click; the answer labels every pixel of the region. The policies here
pick whole regions of the batch's region maps (``ScoreMaps.regions``) and return their unasked
pixels; one pick is one query, so their quotas count regions, not pixels (under a seconds
budget :class:`trainer.selection.seconds.SecondsBudget` turns seconds into queries).

- ``region-random`` (:class:`RegionRandom`): uniformly among the regions with an unasked pixel.
- ``region-ripu`` (:class:`RegionRank` on :func:`ripu_region_score`): RIPU's score lifted to a
  region: the mean pixel entropy of the region times the impurity of its predicted classes.
- ``region-cap`` (:class:`RegionCap`): Algorithm 1's groups and M_e/2 split on regions (our
  ``mcu-cap`` lifted): mean S (Eq. 1) x impurity, regions mostly in the phase's group first.

Impurity (:func:`region_impurity`) is the entropy (nats) of the predicted-class histogram of a
region, as RIPU's region impurity; a region predicted as one class has impurity 0, and its
score is then its mean uncertainty times ``PURE_WEIGHT`` (ranks it below every impure region
of the same uncertainty without ignoring it).

:func:`dominant_answers` is the ground-truth oracle's answer to a region (its GT-dominant
class for every pixel) with the label noise that brings: the pixels whose GT differs.
"""

from __future__ import annotations

import torch

from trainer.constants import IGNORE_INDEX, Group
from trainer.selection.baselines import image_quotas
from trainer.selection.views import BudgetView, Picked, Policy, ScoreMaps

PURE_WEIGHT = 1e-3  # a pure region's score: its mean S times this (ranks behind impure ones)


def region_count(regions: torch.Tensor) -> int:
    """Region ids per image in a batch of maps: ``max id + 1`` (0 for an empty batch)."""
    return int(regions.max()) + 1 if regions.numel() else 0


def region_sums(values: torch.Tensor, regions: torch.Tensor, count: int) -> torch.Tensor:
    """(N, count) float sums of ``values`` (N,H,W) over each image's regions."""
    n = values.shape[0]
    ids = (regions.long() + count * torch.arange(n, device=regions.device).view(n, 1, 1)).view(-1)
    out = torch.zeros(n * count, dtype=torch.float32, device=values.device)
    return out.index_add_(0, ids, values.reshape(-1).float()).view(n, count)


def region_means(values: torch.Tensor, regions: torch.Tensor, count: int) -> torch.Tensor:
    """(N, count) means of ``values`` over each region (0 for an id no pixel carries)."""
    sizes = region_sums(torch.ones_like(values, dtype=torch.float32), regions, count)
    return region_sums(values, regions, count) / sizes.clamp(min=1)


def region_impurity(
    pred: torch.Tensor, regions: torch.Tensor, count: int, classes: int
) -> torch.Tensor:
    """(N, count) entropy (nats) of the predicted-class shares in each region."""
    hist = torch.stack(
        [region_sums((pred == c).float(), regions, count) for c in range(classes)], -1
    )
    share = hist / hist.sum(-1, keepdim=True).clamp(min=1)
    return -(share * share.clamp(min=1e-12).log()).sum(-1)


def impure_score(mean: torch.Tensor, impurity: torch.Tensor) -> torch.Tensor:
    """A region's rank: its mean uncertainty x impurity, ``PURE_WEIGHT`` x mean when pure."""
    return mean * torch.where(impurity > 0, impurity, torch.full_like(impurity, PURE_WEIGHT))


def ripu_region_score(maps: ScoreMaps, count: int) -> torch.Tensor:
    """(N, count) RIPU lifted to regions: mean pixel entropy x predicted-class impurity."""
    assert maps.regions is not None
    prob = maps.prob.float()
    entropy = -(prob * prob.clamp(min=1e-12).log()).sum(1)
    pred = prob.argmax(1)
    impurity = region_impurity(pred, maps.regions, count, prob.shape[1])
    return impure_score(region_means(entropy, maps.regions, count), impurity)


def cap_region_score(maps: ScoreMaps, count: int, wanted: int) -> torch.Tensor:
    """(N, count) ``region-cap``'s rank: mean S x impurity in [0, 1], plus 2 x the region's
    share of pixels in the ``wanted`` group and 1 x its share outside G_l (Algorithm 1's
    groups first, as ``mcu-cap`` ranks pixels)."""
    assert maps.regions is not None
    prob = maps.prob.float()
    pred = prob.argmax(1)
    impurity = region_impurity(pred, maps.regions, count, prob.shape[1])
    rank = impure_score(region_means(maps.score.float(), maps.regions, count), impurity)
    rank = rank / rank.amax().clamp_min(1e-12)
    in_wanted = region_means((maps.groups == wanted).float(), maps.regions, count)
    not_low = region_means((maps.groups != Group.LOW).float(), maps.regions, count)
    return rank + 2.0 * in_wanted + 1.0 * not_low


def open_regions(maps: ScoreMaps, count: int) -> torch.Tensor:
    """(N, count) bool: regions with at least one unasked pixel (a region never asked, or
    one a pixel query touched: its unasked rest may still be asked)."""
    assert maps.regions is not None
    return region_sums(maps.unasked.float(), maps.regions, count) > 0


def pick_regions(rank: torch.Tensor, eligible: torch.Tensor, quotas: torch.Tensor) -> torch.Tensor:
    """(N, count) bool: per image ``n`` its ``quotas[n]`` eligible regions of highest rank
    (fewer when fewer are eligible)."""
    chosen = torch.zeros_like(eligible)
    masked = rank.float().masked_fill(~eligible, float("-inf"))
    for i, q in enumerate(quotas.tolist()):
        k = min(int(q), int(eligible[i].sum()))
        if k > 0:
            chosen[i, masked[i].topk(k).indices] = True
    return chosen


def regions_mask(chosen: torch.Tensor, maps: ScoreMaps) -> torch.Tensor:
    """(N,H,W) bool: the unasked pixels of the ``chosen`` (N, count) regions."""
    assert maps.regions is not None
    return chosen.gather(1, maps.regions.long().flatten(1)).view_as(maps.unasked) & maps.unasked


def dominant_answers(
    region_ids: torch.Tensor, answers: torch.Tensor, ignore: int = IGNORE_INDEX
) -> tuple[torch.Tensor, int, int]:
    """Every pixel of a region labelled with the region's dominant answer.

    ``region_ids``: (K,) long, the (batch-wide) region of each asked pixel; ``answers``: (K,)
    long, each pixel's class as the oracle knows it (ground truth), ``ignore`` = none. A
    region's dominant class is the most frequent of its answers other than ``ignore`` (ties:
    the smallest class id); a region with no such answer is a skip (``ignore`` everywhere).

    Returns the (K,) labels, the noisy pixels (labelled, with an answer other than ``ignore``
    that differs from the label) and the pixels counted (labelled, answer not ``ignore``)."""
    answers = answers.long()
    if answers.numel() == 0:
        return answers.clone(), 0, 0
    _, local = torch.unique(region_ids, return_inverse=True)
    valid = answers != ignore
    classes = int(answers[valid].max()) + 1 if bool(valid.any()) else 1
    votes = torch.zeros(int(local.max()) + 1, classes, dtype=torch.long)
    votes.index_put_((local[valid], answers[valid]), torch.ones_like(local[valid]), accumulate=True)
    best = votes.argmax(1)  # the first maximum: the smallest class id on a tie
    best[votes.sum(1) == 0] = ignore
    labels = best[local]
    counted = valid & (labels != ignore)
    return labels, int((counted & (labels != answers)).sum()), int(counted.sum())


class RegionRandom(Policy):
    """``region-random``: per image its share of the paced quota, uniformly among the regions
    with an unasked pixel."""

    kind = "region"

    def pick(
        self, maps: ScoreMaps, budget: BudgetView, generator: torch.Generator | None
    ) -> Picked:
        count = region_count(maps.regions)
        quotas = image_quotas(budget.paced(), 1, maps.unasked.shape[0])
        rank = torch.rand(maps.unasked.shape[0], count, generator=generator)
        chosen = pick_regions(rank.to(maps.unasked.device), open_regions(maps, count), quotas)
        return Picked(regions_mask(chosen, maps), "random")


class RegionRank(Policy):
    """``region-ripu``: per image its share of the paced quota, the regions of highest
    :func:`ripu_region_score`."""

    kind = "region"

    def pick(
        self, maps: ScoreMaps, budget: BudgetView, generator: torch.Generator | None
    ) -> Picked:
        count = region_count(maps.regions)
        quotas = image_quotas(budget.paced(), 1, maps.unasked.shape[0])
        chosen = pick_regions(ripu_region_score(maps, count), open_regions(maps, count), quotas)
        return Picked(regions_mask(chosen, maps), "ripu")


class RegionCap(Policy):
    """``region-cap``: Algorithm 1's phase (:meth:`BudgetView.phase`: M_e/2 from G_h in the
    first half of the window, then G_m), its paced quota split over the batch's images, the
    regions of highest :func:`cap_region_score`."""

    kind = "region"

    def pick(
        self, maps: ScoreMaps, budget: BudgetView, generator: torch.Generator | None
    ) -> Picked:
        high = budget.phase() == "high"
        quota = budget.high_paced() if high else budget.medium_paced()
        count = region_count(maps.regions)
        quotas = image_quotas(quota, 1, maps.unasked.shape[0])
        rank = cap_region_score(maps, count, Group.HIGH if high else Group.MEDIUM)
        chosen = pick_regions(rank, open_regions(maps, count), quotas)
        return Picked(regions_mask(chosen, maps), "high" if high else "medium")
