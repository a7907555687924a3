"""The simulated annotator's decision: ground-truth class in, answered class (or skip) out;
a region's ground-truth answer (its dominant class) and the time a query costs (the cost
model).

Pure logic, no I/O: randomness comes in as a seeded ``numpy.random.Generator``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from server.schemas_cost import MEAN_SECONDS, spread_factor

IGNORE = 255  # ground-truth value for "no class" (void); also the skip marker returned here
SKIP = IGNORE


class SimulatedAnnotator:
    """Answers a pixel from its ground-truth class, like a careful but imperfect person.

    - GT not among the run's classes (255 = void, or a class the run does not know): skipped
      with probability ``skip_ignore`` (a person would be unsure), else a uniformly random
      class of the run (a guess).
    - Otherwise: with probability ``noise`` a uniformly random *other* class of the run
      (never the GT; with a single class there is no other, so the GT), else the GT.
    """

    def __init__(
        self,
        class_ids: Sequence[int],
        *,
        noise: float = 0.0,
        skip_ignore: float = 1.0,
        rng: np.random.Generator | None = None,
    ) -> None:
        if not class_ids:
            raise ValueError("a run needs at least one class")
        if not (0.0 <= noise <= 1.0 and 0.0 <= skip_ignore <= 1.0):
            raise ValueError("noise and skip_ignore are probabilities in [0, 1]")
        self.classes = np.array(sorted(set(int(c) for c in class_ids)), dtype=np.int64)
        self.noise, self.skip_ignore = noise, skip_ignore
        self.rng = rng if rng is not None else np.random.default_rng()

    def decide(self, gt: np.ndarray) -> np.ndarray:
        """gt: (K,) ints, ground-truth class per queried pixel.

        Returns (K,) int64 answered class ids, ``SKIP`` (255) where the pixel is skipped.
        """
        gt = np.asarray(gt, dtype=np.int64).reshape(-1)
        out = gt.copy()
        known = np.isin(gt, self.classes)
        n_cls = len(self.classes)

        unknown = np.flatnonzero(~known)
        skip = self.rng.random(len(unknown)) < self.skip_ignore
        out[unknown[skip]] = SKIP
        guess = unknown[~skip]
        out[guess] = self.classes[self.rng.integers(0, n_cls, size=len(guess))]

        flip = np.flatnonzero(known & (self.rng.random(len(gt)) < self.noise))
        if n_cls > 1 and len(flip):
            # draw among the n_cls - 1 other classes: an index into the sorted classes that
            # skips the GT's own index
            own = np.searchsorted(self.classes, gt[flip])
            pick = self.rng.integers(0, n_cls - 1, size=len(flip))
            out[flip] = self.classes[pick + (pick >= own)]
        return out

    def decide_one(self, gt: int) -> int:
        return int(self.decide(np.array([gt]))[0])


def dominant_class(values: np.ndarray, ignore: int = IGNORE) -> int:
    """A region query's ground-truth answer: the most frequent class of the region's pixels
    ``values`` (ints), void (``ignore``) excluded; a tie goes to the smallest class id (as the
    trainer's in-process oracle, ``trainer.selection.regions.dominant_answers``); ``ignore``
    when no pixel has a class."""
    values = np.asarray(values, dtype=np.int64).reshape(-1)
    valid = values[values != ignore]
    if valid.size == 0:
        return ignore
    return int(np.bincount(valid).argmax())  # argmax: the first maximum, the smallest id


class LeadTimes:
    """The simulated annotator's time per query from the cost model (``server.schemas_cost``):
    the mean seconds of the query's kind (a pixel click, a region click, a skip) times a factor
    drawn uniformly from ``[1 - spread, 1 + spread]`` by the seeded ``rng``, in whole ms."""

    def __init__(self, spread: float = 0.0, rng: np.random.Generator | None = None) -> None:
        if not 0.0 <= spread < 1.0:
            raise ValueError(f"the cost spread must lie in [0, 1), got {spread}")
        self.spread = spread
        self.rng = rng if rng is not None else np.random.default_rng()

    def ms(self, kind: str) -> int:
        """One query of ``kind`` (``"pixel"``, ``"region"`` or ``"skip"``), in ms."""
        factor = spread_factor(float(self.rng.random()), self.spread) if self.spread else 1.0
        return round(1000 * MEAN_SECONDS[kind] * factor)
