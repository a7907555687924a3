"""The budget's wire models and its one counting rule (``budget_out``): part of the contract
(pure pydantic, like ``server.schemas``), read by the server's routes and by the trainer's
simulated service."""

from __future__ import annotations

from pydantic import BaseModel, computed_field

from server.schemas import GROUPS


class GroupBudget(BaseModel):
    reserved: int = 0  # pixels
    answered: int = 0  # pixels
    answered_seconds: float = 0.0  # annotators' seconds on its answers
    skipped_seconds: float = 0.0  # annotators' seconds on its skips

    @computed_field  # type: ignore[prop-decorator]
    @property
    def spent_seconds(self) -> float:
        """All the annotators' seconds on the group: its answers' and its skips'."""
        return self.answered_seconds + self.skipped_seconds


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
    # annotators' seconds: the sum of the lead_time_ms of every answer row / 1000 (an answer
    # sent without a lead time counts 0); of every skip by an annotator likewise
    answered_seconds: float = 0.0
    skipped_seconds: float = 0.0

    @computed_field  # type: ignore[prop-decorator]
    @property
    def spent_seconds(self) -> float:
        """All the annotators' seconds on the run: its answers' and its skips'."""
        return self.answered_seconds + self.skipped_seconds


def budget_out(
    expected: int,
    rows: list[tuple[str, str, str | None, int]],
    spent: tuple[int, int] | None = None,
    seconds: dict[str, float] | None = None,
    skipped_seconds: dict[str, float] | None = None,
) -> BudgetOut:
    """A run's budget from its queries' ``(group, status, skip reason, pixels)`` rows, by the
    service's rule: spent = reserved (pending or leased) + answered; a skip, a release (status
    ``released``: what finishing the run gave up) or a withdrawal costs nothing; ``remaining``
    = M_e (``expected``) - spent; ``cant_tell`` counts the skips whose reason says so; all in
    pixels (``query_pixels``). ``spent``: (reserved, answered) where the caller keeps them as
    counters (the server, on the run row); else the rows' sums. ``seconds``: the annotators'
    seconds per group on answers (``answered_seconds``); ``skipped_seconds``: on skips; each
    group's and the run's ``spent_seconds`` is their sum."""
    groups = {g: GroupBudget() for g in GROUPS}
    for group, secs in (seconds or {}).items():
        groups.setdefault(group, GroupBudget()).answered_seconds = float(secs)
    for group, secs in (skipped_seconds or {}).items():
        groups.setdefault(group, GroupBudget()).skipped_seconds = float(secs)
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
        answered_seconds=sum(g.answered_seconds for g in groups.values()),
        skipped_seconds=sum(g.skipped_seconds for g in groups.values()),
    )
