"""What the pieces of a session share, built once by :class:`trainer.worker.session.Session`.

The queue keeper (:mod:`trainer.worker.queue_keeper`) asks, the learner
(:mod:`trainer.worker.learner`) learns; they meet in the label bank (the keeper marks the
pixels it asks, the link merges the answers, the learner trains on them) and in Algorithm 1's
state (the keeper calibrates the thresholds and selects with them, the learner's steps update
the rest), and they draw from the same orders of the target images and the same generator.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from trainer.cost import CostModel
from trainer.learning.labelbank import LabelBank
from trainer.loop.step import LoopState
from trainer.worker.rounds import Picker


@dataclass
class Shared:
    """One session's run and the state its pieces share."""

    run_id: int  # the run on the server
    expected: int  # M_e: the run's budget as the server set it
    bank: LabelBank  # the labels: asked (keeper), answered (link), trained on (learner)
    state: LoopState  # Algorithm 1's thresholds (keeper) and the step's state (learner)
    picker: Picker  # the passes over the target images: rounds (keeper), batches (learner)
    generator: torch.Generator  # the draws: round pixels (keeper), source batches (learner)
    # (N, H, W) int32 superpixel ids of the target images, computed once (region queries only)
    regions: torch.Tensor | None = None
    # a budget in annotator seconds: the cost model whose most a query in flight is charged
    # until its answer's seconds come back from the server; None: a budget in pixels
    costs: CostModel | None = None
    budget_seconds: float | None = None  # the run's seconds budget as the server holds it
