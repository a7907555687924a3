"""What a selection policy sees (the score maps, the budget) and what it returns.

Algorithm 1's phase rule has its one definition here (:meth:`BudgetView.phase`).

A :class:`BudgetView` is read once per round by the driver (the benchmark loop once per
iteration of the query window, the session once per posted round) and handed to the policy:
M_e as the server holds it, the pixels spent per group (the server's reserved + answered, or
the labels stored in process), the query window and iteration (benchmark mode) or none
(session mode: the round's cap paces the spending), and a cap on how many pixels this one call
may take. The budget flows one way: the policy reads the view and never calls back.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, NamedTuple

import torch

Phase = Literal["high", "medium", "done"]


def per_iteration_quota(remaining: int, iterations_left: int) -> int:
    """Pixels to spend this iteration: ``ceil(remaining / max(1, iterations_left))``.

    Clamped to ``[0, remaining]``; a negative ``remaining`` gives 0.
    """
    if remaining <= 0:
        return 0
    return min(remaining, math.ceil(remaining / max(1, iterations_left)))


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
        M_e/2 over that half: ``ceil(ceil(M_e/2 / high_until) * cap_factor)`` a batch.

        A window of one iteration (``iterations * query_share < 1.5``: tiny runs only, never a
        pass schedule) is all high phase, so it spends at most M_e/2: Algorithm 1 needs an
        iteration for each phase."""
        query_until = max(1, round(iterations * query_share))
        high_until = max(1, query_until // 2)
        high_cap = max(1, math.ceil(math.ceil((expected // 2) / high_until) * cap_factor))
        return QueryWindow(expected, query_until, high_until, max(1, pass_length), high_cap)


@dataclass(frozen=True)
class BudgetView:
    """The budget as one selection call sees it.

    ``expected``: M_e in pixels (the server's ``budget_total`` when a service runs the budget).
    ``spent``: pixels spent per group name (``"high"``, ``"medium"``, ``"random"``, ...).
    ``window`` / ``iteration``: the benchmark loop's schedule; ``window=None`` (a session's
    round) has no schedule: the whole budget left is open and ``cap`` paces it.
    ``cap``: the most pixels this call may take (None: no cap beyond the pacing).
    ``epoch_end``: this call ends a pass over the target images (Alg. 1 line 7 decays then).
    """

    expected: int
    spent: Mapping[str, int]
    window: QueryWindow | None = None
    iteration: int = 0
    cap: int | None = None
    epoch_end: bool = False

    @staticmethod
    def at(window: QueryWindow, iteration: int, spent: Mapping[str, int]) -> BudgetView:
        """The benchmark loop's view at ``iteration``: M_e from the window, a pass ends on the
        last iteration of every ``pass_length``."""
        end = iteration % window.pass_length == window.pass_length - 1
        return BudgetView(window.expected, spent, window, iteration, epoch_end=end)

    @property
    def total(self) -> int:
        """Pixels spent, every group together."""
        return sum(self.spent.values())

    @property
    def left(self) -> int:
        """M_e minus what is spent (negative when overspent)."""
        return self.expected - self.total

    @property
    def closed(self) -> bool:
        """The query window is over (never for a view without a window)."""
        return self.window is not None and self.iteration >= self.window.query_until

    def phase(self) -> Phase:
        """Algorithm 1's phase (lines 5-9 with footnote 3), the one definition of the rule.

        ``"high"`` while ``M_a < M_e // 2`` (M_a: pixels spent from G_h) and, with a window,
        ``iteration < high_until``; then ``"medium"`` while anything of M_e is left (the medium
        phase owns ``M_e - M_e // 2`` plus what the high phase left unspent, so every strategy
        spends the same M_e); ``"done"`` once it is all spent or the window is closed."""
        if self.closed:
            return "done"
        high_open = self.window is None or self.iteration < self.window.high_until
        if self.spent.get("high", 0) < self.expected // 2 and high_open:
            return "high"
        return "medium" if self.left > 0 else "done"

    def capped(self, k: int) -> int:
        """``k`` within this call's cap."""
        return k if self.cap is None else min(k, self.cap)

    def high_left(self) -> int:
        """What the high phase may still spend: ``M_e // 2 - M_a``."""
        return self.expected // 2 - self.spent.get("high", 0)

    def high_paced(self) -> int:
        """The high phase's budget left, spread over its iterations left (all of it without a
        window), within the cap."""
        left = 1 if self.window is None else self.window.high_until - self.iteration
        return self.capped(per_iteration_quota(self.high_left(), left))

    def medium_paced(self) -> int:
        """The rest of M_e spread over the window's iterations left after the high phase's
        (all of it without a window), within the cap."""
        left = 1
        if self.window is not None:
            left = self.window.query_until - max(self.iteration, self.window.high_until)
        return self.capped(per_iteration_quota(self.left, max(1, left)))

    def paced(self) -> int:
        """A baseline's quota: the budget left spread evenly over the window's iterations left
        (all of it without a window), within the cap."""
        left = 1 if self.window is None else self.window.query_until - self.iteration
        return self.capped(per_iteration_quota(self.left, left))

    def iterations_left(self) -> int:
        """The window's iterations left, this one included (1 without a window)."""
        return 1 if self.window is None else self.window.query_until - self.iteration

    def elapsed(self) -> float:
        """Share of the window done after this call (1.0 without a window)."""
        return 1.0 if self.window is None else (self.iteration + 1) / self.window.query_until


@dataclass(frozen=True)
class ScoreMaps:
    """A batch of target images as the policy sees it.

    ``score``: (N,H,W) S (Eq. 1); ``groups``: (N,H,W) group ids (``partition``, section
    III-B); ``prob``: (N,C,H,W) softmax of the main head; ``unasked``: (N,H,W) bool, the
    pixels never asked before; ``regions``: (N,H,W) int superpixel ids of each image (region
    queries only, ``trainer/data/superpixels.py``; None for pixel queries)."""

    score: torch.Tensor
    groups: torch.Tensor
    prob: torch.Tensor
    unasked: torch.Tensor
    regions: torch.Tensor | None = None


class Picked(NamedTuple):
    """The pixels to ask ((N,H,W) bool) and the group (wire name) they are asked as."""

    mask: torch.Tensor
    group: str


class Policy(ABC):
    """A selection strategy: score maps and a budget view in, the pixels to ask out.

    :meth:`select` answers an empty ``"done"`` once the window is closed; the strategies
    implement :meth:`pick` for the calls inside it. ``kind`` is what one pick is asked as
    (``trainer.cost``: ``"pixel"``, or ``"region"``: every picked pixel of a superpixel is
    one query, labelled with its dominant class); :meth:`kind_at` the kind of the pick at a
    view (a policy that mixes both says which)."""

    kind = "pixel"

    def kind_at(self, budget: BudgetView) -> str:
        return self.kind

    def select(
        self, maps: ScoreMaps, budget: BudgetView, generator: torch.Generator | None = None
    ) -> Picked:
        if budget.closed:
            return Picked(torch.zeros_like(maps.unasked), "done")
        return self.pick(maps, budget, generator)

    @abstractmethod
    def pick(
        self, maps: ScoreMaps, budget: BudgetView, generator: torch.Generator | None
    ) -> Picked:
        """The pixels to ask inside the window."""
