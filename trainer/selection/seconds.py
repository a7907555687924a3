"""Budgets in annotator seconds and runs that ask pixels and regions (issue 24).

:class:`SecondsBudget` runs any policy under a budget in seconds (``trainer.cost``): it hands
the policy the view it knows, in queries, converted from seconds at the most one query of the
policy's kind may cost (its mean cost times ``1 + spread``, :meth:`trainer.cost.CostModel.most`):
M_e = floor(budget seconds / most) queries, each group's spent seconds rounded up to queries.
So Algorithm 1's M_e/2 split and every strategy's pacing work in seconds: the high phase lasts
while G_h's seconds, rounded up to queries, are under M_e // 2 queries (it ends within one
query's seconds of half the budget, never past it), and no run passes its seconds: the queries
left are at most (budget - spent seconds) / most, and no query costs more than ``most``.

:class:`Alternate` asks pixels and regions (``query_kind = "both"``): pixel queries on even
iterations of the window, region queries on odd ones, each under the one seconds budget (a
session's rounds count their selections instead: pixels on even ones, regions on odd ones).
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch

from trainer.selection.views import BudgetView, Picked, Policy, ScoreMaps


def in_queries(
    view: BudgetView, budget_seconds: float, most: float, cap_factor: float
) -> BudgetView:
    """``view`` (spent in seconds per group) as a view in queries that cost at most ``most``
    seconds each, with M_e = floor(budget_seconds / most) and the window's high cap
    recomputed from it (as :meth:`trainer.selection.views.QueryWindow.plan` does)."""
    expected = int(math.floor(budget_seconds / most + 1e-9))
    spent = {g: int(math.ceil(s / most - 1e-9)) for g, s in view.spent.items()}
    window = view.window
    if window is not None:
        high = max(1, math.ceil(math.ceil((expected // 2) / window.high_until) * cap_factor))
        window = replace(window, expected=expected, high_cap=high)
    return replace(view, expected=expected, spent=spent, window=window)


class SecondsBudget(Policy):
    """``inner`` under ``budget_seconds`` annotator seconds, one of its queries costing at
    most ``most`` seconds (:func:`in_queries`)."""

    def __init__(self, inner: Policy, budget_seconds: float, most: float, cap_factor: float):
        if most <= 0:
            raise ValueError(f"a query must cost more than 0 s, got {most}")
        self.inner, self.budget_seconds, self.most = inner, budget_seconds, most
        self.cap_factor = cap_factor
        self.kind = inner.kind

    def view(self, budget: BudgetView) -> BudgetView:
        return in_queries(budget, self.budget_seconds, self.most, self.cap_factor)

    def pick(
        self, maps: ScoreMaps, budget: BudgetView, generator: torch.Generator | None
    ) -> Picked:
        return self.inner.select(maps, self.view(budget), generator)


class Alternate(Policy):
    """Pixel queries on even iterations, region queries on odd ones (sessions: selections)."""

    def __init__(self, pixels: Policy, regions: Policy) -> None:
        self.pixels, self.regions = pixels, regions

    def _at(self, budget: BudgetView) -> Policy:
        return self.regions if budget.iteration % 2 else self.pixels

    def kind_at(self, budget: BudgetView) -> str:
        return self._at(budget).kind

    def pick(
        self, maps: ScoreMaps, budget: BudgetView, generator: torch.Generator | None
    ) -> Picked:
        return self._at(budget).select(maps, budget, generator)
