"""The session mode's hand-backs: the trainer withdraws stale pending queries, an annotator
releases the leases of a page that closes. Each moves rows with one conditional UPDATE, so a
query claimed (or answered) meanwhile is never touched."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from server.errors import BadRequest, NotWithdrawable, QueryNotFound
from server.models import Query
from server.queue import Dispatcher
from server.schemas_tokens import Me
from server.services import budget
from server.services.runs import forget, require_active
from server.session_schemas import KeptQuery, ReleaseOut, WithdrawOut


def _unique(ids: Sequence[int]) -> list[int]:
    if len(set(ids)) != len(ids):
        raise BadRequest("A query id appears twice in the list.")
    return list(ids)


def _states(
    db: Session, ids: Sequence[int], run_id: int | None = None, me: Me | None = None
) -> dict[int, str]:
    """Status of queries ``ids`` (of run ``run_id``; of the runs ``me`` sees): absent ids do
    not exist there."""
    stmt = select(Query.id, Query.status, Query.run_id).where(Query.id.in_(list(ids)))
    if run_id is not None:
        stmt = stmt.where(Query.run_id == run_id)
    return {r.id: r.status for r in db.execute(stmt) if me is None or me.sees(r.run_id)}


def _missing(db: Session, ids: Sequence[int], states: dict[int, str], where: str) -> None:
    """404 (after a rollback: nothing changed) for the first id that ``states`` lacks."""
    gone = [i for i in ids if i not in states]
    if gone:
        db.rollback()
        raise QueryNotFound(f"Query {gone[0]} does not exist{where}; nothing was changed.")


def withdraw(db: Session, queue: Dispatcher, run_id: int, ids: Sequence[int]) -> WithdrawOut:
    """Withdraw the listed pending queries and release their reservations, in one
    transaction. Already withdrawn ones stay so; leased, answered and skipped ones are kept.
    Refused (nothing changed): an id not in the run (404), none withdrawable (409)."""
    ids = _unique(ids)
    require_active(db, run_id)
    stmt = (
        update(Query)
        .where(Query.run_id == run_id, Query.id.in_(ids), Query.status == "pending")
        .values(status="withdrawn", lease_expires_at=None)
        .returning(Query.id, Query.pixels)
        .execution_options(synchronize_session=False)
    )
    moved = db.execute(stmt).all()
    now_withdrawn, freed = sorted(r.id for r in moved), sum(r.pixels for r in moved)
    states = _states(db, ids, run_id)
    _missing(db, ids, states, f" in run {run_id}")
    withdrawn = [i for i in ids if states[i] == "withdrawn"]
    if not withdrawn:
        db.rollback()
        counts = ", ".join(f"{n} {s}" for s, n in sorted(Counter(states.values()).items()))
        raise NotWithdrawable(
            f"None of the listed queries is pending ({counts}): a claimed, answered or "
            "skipped query is never withdrawn; nothing was changed."
        )
    if now_withdrawn:
        budget.settle(db, run_id, reserved=-freed, answered=0)
    db.commit()
    forget(queue, run_id, now_withdrawn)
    kept = [KeptQuery(id=i, status=states[i]) for i in ids if states[i] != "withdrawn"]
    return WithdrawOut(withdrawn=withdrawn, kept=kept)


def release(db: Session, queue: Dispatcher, me: Me, ids: Sequence[int]) -> ReleaseOut:
    """Put the caller's unanswered leases among ``ids`` back to pending at once; any other
    listed query (another's lease, answered, pending...) is left as it is. Idempotent."""
    ids = _unique(ids)
    stmt = (
        update(Query)
        .where(Query.id.in_(ids), Query.status == "leased", Query.annotator_id == me.id)
        .values(status="pending", annotator_id=None, lease_expires_at=None)
        .returning(Query.id, Query.run_id)
        .execution_options(synchronize_session=False)
    )
    rows = db.execute(stmt).all()
    _missing(db, ids, _states(db, ids, me=me), "")  # a scoped token's other runs: 404 too
    db.commit()
    by_run: dict[int, list[int]] = defaultdict(list)
    for row in rows:
        by_run[row.run_id].append(row.id)
    for run_id, qids in by_run.items():  # a fresh entry for each: the next claim finds it
        forget(queue, run_id, sorted(qids))
        queue.enqueue(run_id, sorted(qids))
    return ReleaseOut(released=sorted(r.id for r in rows))
