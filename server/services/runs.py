"""Runs: creation with the budget M_e = floor(budget_rate * target_pixels)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from server.errors import Forbidden, RunFinished, RunNotFound
from server.models import Query, Run
from server.queue import Dispatcher
from server.schemas import RunIn, RunOut, budget_total
from server.schemas_tokens import Me


def to_out(run: Run) -> RunOut:
    return RunOut.model_validate(run, from_attributes=True)


def create_run(db: Session, data: RunIn, me: Me) -> RunOut:
    if me.run_ids is not None:
        raise Forbidden("A token scoped to runs may not create runs; ask an admin for one.")
    run = Run(
        name=data.name,
        classes=[c.model_dump(mode="json") for c in data.classes],
        target_pixels=data.target_pixels,
        budget_rate=data.budget_rate,
        budget_total=budget_total(data.budget_rate, data.target_pixels),
        strategy=data.strategy,
        config=data.config,
        budget_seconds=data.budget_seconds,
        status="active",
        reserved=0,
        answered=0,
        consumed_cursor=0,
    )
    db.add(run)
    db.commit()
    return to_out(run)


def get_run(db: Session, run_id: int) -> Run:
    run = db.get(Run, run_id)
    if run is None:
        raise RunNotFound(f"Run {run_id} does not exist.")
    return run


def list_runs(db: Session, run_ids: Sequence[int] | None = None) -> list[RunOut]:
    """Every run, newest first; only ``run_ids`` for a token scoped to them."""
    stmt = select(Run).order_by(Run.id.desc())
    if run_ids is not None:
        stmt = stmt.where(Run.id.in_(list(run_ids)))
    return [to_out(r) for r in db.execute(stmt).scalars().all()]


def set_status(db: Session, run_id: int, status: str, role: str) -> tuple[RunOut, list[int]]:
    """Finish (or, as an admin, reopen) a run. Finishing releases every reservation in the
    same transaction: its pending and leased queries become ``skipped`` (a reopened run keeps
    them so) and the reserved counter drops by as many. Finishing a finished run is 409
    ``run_finished`` and changes nothing (a concurrent finish included: the run row moves
    only from the status read here). Returns the run and the released query ids (for the
    dispatcher to forget)."""
    run = get_run(db, run_id)
    if run.status == "finished" and status == "finished":
        raise RunFinished(f"Run {run_id} is already finished; nothing was changed.")
    if run.status == "finished" and status == "active" and role != "admin":
        raise Forbidden(
            "Only an admin may reopen a finished run (its released queries stay skipped)."
        )
    released: list[int] = []
    freed = 0  # the released queries' pixels (schemas.query_pixels)
    if status == "finished":
        stmt = (
            update(Query)
            .where(Query.run_id == run_id, Query.status.in_(("pending", "leased")))
            .values(status="skipped", lease_expires_at=None)
            .returning(Query.id, Query.pixels)
            .execution_options(synchronize_session=False)
        )
        rows = db.execute(stmt).all()
        released, freed = [r.id for r in rows], sum(r.pixels for r in rows)
    moved = db.execute(
        update(Run)
        .where(Run.id == run_id, Run.status == run.status)
        .values(status=status, reserved=Run.reserved - freed)
        .execution_options(synchronize_session=False)
    )
    if moved.rowcount != 1:
        db.rollback()
        raise RunFinished(f"Run {run_id} changed status meanwhile; nothing was changed.")
    db.refresh(run)  # before the commit (see queries.skip): no transaction after it
    out = to_out(run)
    db.commit()
    return out, released


def require_active(db: Session, run_id: int) -> None:
    """409 ``run_finished`` unless the run is active (404 if there is no such run)."""
    status = db.execute(select(Run.status).where(Run.id == run_id)).scalar_one_or_none()
    if status is None:
        raise RunNotFound(f"Run {run_id} does not exist.")
    if status != "active":
        raise RunFinished(f"Run {run_id} is {status}: it takes no more claims or answers.")


def forget(queue: Dispatcher, run_id: int, ids: Sequence[int]) -> None:
    """Tell the dispatcher that ``ids`` left the queue (after the commit), in chunks."""
    for i in range(0, len(ids), 1000):
        queue.ack(run_id, ids[i : i + 1000])


def class_ids(run: Run) -> set[int]:
    return {int(c["id"]) for c in run.classes}
