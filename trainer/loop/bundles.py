"""What one iteration passes around: the batch, the loop state, the learner, the oracle, the
asking half's bundle and the forward pass's outputs (:mod:`trainer.loop.step` composes them)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from trainer.config import FixedShapes, TrainConfig
from trainer.nets.output import SegOutput
from trainer.selection.sampling import ActiveSampler
from trainer.selection.views import BudgetView, Policy, QueryWindow

# ask(index (K,), ys (K,), xs (K,), group, scores (K,)) -> classes (K,) long, 255 = no answer
Ask = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, str, torch.Tensor], torch.Tensor]
# spent() -> pixels already spent per group ({"high": n, "medium": n, ...}); seconds under a
# budget in annotator seconds (trainer.cost)
Spent = Callable[[], dict[str, int]] | Callable[[], dict[str, float]]
# charge(kind, group, answered, skipped) -> seconds: books queries against a seconds budget
Charge = Callable[[str, str, int, int], float]


@dataclass
class Batch:
    """source_x (Bs,3,H,W) float, source_y (Bs,H,W) long (255 ignore), target_x (Bt,3,H,W)
    float, target_index (Bt,) long on the CPU: rows of the target images in the label bank."""

    source_x: torch.Tensor
    source_y: torch.Tensor
    target_x: torch.Tensor
    target_index: torch.Tensor
    target_y: torch.Tensor | None = None  # only for the fully supervised ceiling
    target_regions: torch.Tensor | None = None  # (Bt,H,W) superpixel ids: region queries only


@dataclass
class LoopState:
    """What persists across iterations besides the network: thresholds, DCCM, the window."""

    sampler: ActiveSampler
    window: QueryWindow
    dccm: torch.Tensor
    calibrated: bool = False


@dataclass
class Learner:
    """What a step needs besides the batch: the network and its optimiser, the config, the
    loop state, the generator of every draw, and the device sync of the timings."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    cfg: TrainConfig
    state: LoopState
    generator: torch.Generator
    sync: Callable[[], None] = lambda: None


@dataclass
class Oracle:
    """Who answers and keeps the budget: ``ask`` (the ground truth, the service, rank 0's),
    ``spent`` (read once per round of selection) and M_e as the service holds it (None: the
    config's rate times the target pixels, :func:`trainer.loop.train.budget_pixels`)."""

    ask: Ask
    spent: Spent
    expected: int | None = None
    charge: Charge | None = None  # the simulated oracle's cost model (None: nothing charged)


@dataclass
class Asking:
    """The asking half of one iteration: the run's policy, the budget as read for this round
    and the oracle's ``ask``."""

    policy: Policy
    budget: BudgetView
    ask: Ask
    charge: Charge | None = None


@dataclass
class Forward:
    """A batch through the network: its outputs, upsampled logits of every row (``main``,
    ``aux``), S (Eq. 1) and the groups of every row, the target softmax, the argmax of every
    row, and the number of source rows in front."""

    out: SegOutput
    main: torch.Tensor
    aux: torch.Tensor
    score: torch.Tensor
    groups: torch.Tensor
    prob: torch.Tensor
    pred: torch.Tensor
    n_src: int


def fixed_shapes(cfg: TrainConfig, device: torch.device) -> bool:
    """Whether the step takes its fixed-size, sync-free forms (``cfg.fixed_shapes``)."""
    mode = FixedShapes(cfg.fixed_shapes)
    return mode == FixedShapes.ON or (mode == FixedShapes.AUTO and device.type == "cuda")
