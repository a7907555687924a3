"""An exponential moving average of a network's weights (Polyak averaging).

After every optimiser step ``average <- decay * average + (1 - decay) * weights`` for each
parameter and each floating-point buffer (BatchNorm's running statistics: averaged with the
weights they normalise, since the trained network's statistics belong to its own, newer
weights and paired with averaged ones broke the network); integer buffers (BatchNorm's
``num_batches_tracked``) are copied. With ``decay = 0.99`` the
average spans about 100 steps (1 / (1 - decay)): at a constant learning rate it keeps what
the last hundred steps agree on and drops the step-to-step noise of SGD on a handful of
labels. Used by the session's learner (``--weight-average``), which evaluates and reports the
average and trains the network itself.

With ``warmup`` the decay of the n-th update is ``min(decay, 1 - 1 / n)``: the first update
copies the weights, the first ``1 / (1 - decay)`` updates give every step's weights the same
share (their running mean), and from then on it is the exponential average above. Without it
the average starts at the weights it was made from (a session's pre-trained network), which
keep a share of ``decay ** n`` after n steps: 71 % after 170 steps at 0.998, the count of a
person-paced session on a loaded 2-core machine, whose reported model was then mostly the
pre-trained one (docs/results.md).
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class WeightAverage:
    """``model``'s weights averaged over its steps; :attr:`model` is the averaged network."""

    def __init__(self, model: nn.Module, decay: float, warmup: bool = False) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"the weight average's decay must lie in (0, 1), got {decay}")
        self.decay, self.warmup = decay, warmup
        self.updates = 0  # updates so far (the warm-up counts them)
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """One step of the average towards ``model``'s weights (same architecture)."""
        self.updates += 1
        decay = min(self.decay, 1.0 - 1.0 / self.updates) if self.warmup else self.decay
        for mine, theirs in zip(self.model.parameters(), model.parameters(), strict=True):
            mine.lerp_(theirs.detach(), 1.0 - decay)
        for mine, theirs in zip(self.model.buffers(), model.buffers(), strict=True):
            if mine.is_floating_point():
                mine.lerp_(theirs, 1.0 - decay)
            else:
                mine.copy_(theirs)
