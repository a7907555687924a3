"""Runs: creation with the budget M_e = floor(budget_rate * target_pixels)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from server.errors import RunNotFound
from server.models import Run
from server.schemas import RunIn, RunOut, budget_total


def to_out(run: Run) -> RunOut:
    return RunOut.model_validate(run, from_attributes=True)


def create_run(db: Session, data: RunIn) -> RunOut:
    run = Run(
        name=data.name,
        classes=[c.model_dump(mode="json") for c in data.classes],
        target_pixels=data.target_pixels,
        budget_rate=data.budget_rate,
        budget_total=budget_total(data.budget_rate, data.target_pixels),
        strategy=data.strategy,
        config=data.config,
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


def list_runs(db: Session) -> list[RunOut]:
    runs = db.execute(select(Run).order_by(Run.id.desc())).scalars().all()
    return [to_out(r) for r in runs]


def set_status(db: Session, run_id: int, status: str) -> RunOut:
    run = get_run(db, run_id)
    run.status = status
    db.commit()
    return to_out(run)


def class_ids(run: Run) -> set[int]:
    return {int(c["id"]) for c in run.classes}
