"""The run's pixel budget: a counter on the run row, moved in the caller's transaction; the
annotators' seconds beside it, summed from the answers' and the skips' lead times."""

from __future__ import annotations

from typing import Any

from sqlalchemy import case, func, literal, select, update
from sqlalchemy.orm import Session

from server.errors import BudgetExceeded, RunFinished
from server.models import Answer, Query, Run
from server.schemas_budget import BudgetOut, budget_out
from server.services.runs import get_run


def answered_ms() -> Any:
    """The annotators' time over the answer rows it is summed over, in milliseconds: their
    ``lead_time_ms`` summed, a missing lead time counting 0 (the one rule for seconds)."""
    return func.coalesce(func.sum(Answer.lead_time_ms), 0)


def skipped_ms() -> Any:
    """The annotators' time over the query rows it is summed over, in milliseconds: their
    skips' ``skip_lead_time_ms`` summed, a missing one counting 0 (only a skip by an
    annotator stores one; undoing the skip clears it)."""
    return func.coalesce(func.sum(Query.skip_lead_time_ms), 0)


def reserve(db: Session, run_id: int, n: int) -> None:
    """Reserve ``n`` pixels with one atomic conditional UPDATE (never overspends)."""
    stmt = (
        update(Run)
        .where(
            Run.id == run_id,
            Run.status == "active",
            Run.reserved + Run.answered + n <= Run.budget_total,
        )
        .values(reserved=Run.reserved + n)
        .execution_options(synchronize_session=False)
    )
    if db.execute(stmt).rowcount == 1:
        return
    run = get_run(db, run_id)
    if run.status != "active":
        raise RunFinished()
    left = run.budget_total - run.reserved - run.answered
    raise BudgetExceeded(f"The batch asks for {n} pixels but only {left} remain in the budget.")


def settle(db: Session, run_id: int, reserved: int, answered: int) -> None:
    """Move the counters by the given deltas (answer: -1/+1, skip: -1/0, undo: +1/-1)."""
    stmt = (
        update(Run)
        .where(Run.id == run_id)
        .values(reserved=Run.reserved + reserved, answered=Run.answered + answered)
        .execution_options(synchronize_session=False)
    )
    db.execute(stmt)


def get_budget(db: Session, run_id: int) -> BudgetOut:
    run = get_run(db, run_id)
    # a skip by an annotator has its time; finishing the run releases without one
    kind = case(
        ((Query.status == "skipped") & Query.skipped_at.is_(None), literal("released")),
        else_=Query.status,
    )
    rows = db.execute(
        select(Query.group, kind, Query.skip_reason, func.sum(Query.pixels))
        .where(Query.run_id == run_id)
        .group_by(Query.group, kind, Query.skip_reason)
    ).all()
    seconds = db.execute(
        select(Query.group, answered_ms())
        .join(Query, Query.id == Answer.query_id)
        .where(Answer.run_id == run_id)
        .group_by(Query.group)
    ).all()
    skips = db.execute(
        select(Query.group, skipped_ms())
        .where(Query.run_id == run_id, Query.skip_lead_time_ms.is_not(None))
        .group_by(Query.group)
    ).all()
    by_group = {group: int(ms) / 1000 for group, ms in seconds}
    skipped_by_group = {group: int(ms) / 1000 for group, ms in skips}
    rows = [(g, k, r, int(n)) for g, k, r, n in rows]
    spent = (run.reserved, run.answered)
    return budget_out(run.budget_total, rows, spent, by_group, skipped_by_group)
