"""The budget's wire models and its one counting rule (``budget_out``): part of the contract
(pure pydantic, like ``server.schemas``), read by the server's routes and by the trainer's
simulated service."""

from __future__ import annotations

from pydantic import BaseModel

from server.schemas import GROUPS


class GroupBudget(BaseModel):
    reserved: int = 0
    answered: int = 0


class BudgetOut(BaseModel):
    expected: int
    reserved: int
    answered: int
    skipped: int  # by annotators
    cant_tell: int = 0  # of the skipped: the annotator could not tell the class
    released: int = 0  # given up when the run was finished
    withdrawn: int = 0
    remaining: int
    groups: dict[str, GroupBudget]


def budget_out(
    expected: int,
    rows: list[tuple[str, str, str | None, int]],
    spent: tuple[int, int] | None = None,
) -> BudgetOut:
    """A run's budget from its queries' ``(group, status, skip reason, count)`` rows, by the
    service's rule: spent = reserved (pending or leased) + answered; a skip, a release (status
    ``released``: what finishing the run gave up) or a withdrawal costs nothing; ``remaining``
    = M_e (``expected``) - spent; ``cant_tell`` counts the skips whose reason says so.
    ``spent``: (reserved, answered) where the caller keeps them as
    counters (the server, on the run row); else the rows' sums."""
    groups = {g: GroupBudget() for g in GROUPS}
    skipped = withdrawn = cant_tell = released = 0
    for group, status, reason, count in rows:
        cant_tell += count if reason == "cant_tell" else 0
        slot = groups.setdefault(group, GroupBudget())
        if status in ("pending", "leased"):
            slot.reserved += count
        elif status == "answered":
            slot.answered += count
        elif status == "withdrawn":
            withdrawn += count
        elif status == "released":
            released += count
        else:
            skipped += count
    reserved, answered = spent or (
        sum(g.reserved for g in groups.values()),
        sum(g.answered for g in groups.values()),
    )
    return BudgetOut(
        expected=expected,
        reserved=reserved,
        answered=answered,
        skipped=skipped,
        cant_tell=cant_tell,
        released=released,
        withdrawn=withdrawn,
        remaining=expected - reserved - answered,
        groups=groups,
    )
