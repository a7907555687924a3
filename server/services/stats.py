"""Live counters of a run for the dashboard."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import case, func, literal, select
from sqlalchemy.orm import Session

from server.models import Answer, Query
from server.schemas_reports import StatsOut
from server.services.runs import get_run


def status_counts(db: Session, run_id: int, now: datetime) -> dict[str, int]:
    """Queries per status, a lease past its ``lease_expires_at`` counted as ``expired`` (its
    row stays ``leased`` until the next claim takes it: a crashed browser's lease is free
    again at once, whenever that claim comes); ``cant_tell``: of the skipped, those whose
    reason says the annotator could not tell the class."""
    status = case(
        (
            (Query.status == "leased") & (Query.lease_expires_at < now),
            literal("expired"),
        ),
        else_=Query.status,
    )
    rows = db.execute(
        select(status, Query.skip_reason, func.count())
        .where(Query.run_id == run_id)
        .group_by(status, Query.skip_reason)
    ).all()
    counts: dict[str, int] = {}
    for key, reason, n in rows:
        counts[str(key)] = counts.get(str(key), 0) + int(n)
        if reason == "cant_tell":
            counts["cant_tell"] = counts.get("cant_tell", 0) + int(n)
    return counts


def get_stats(db: Session, run_id: int, now: datetime) -> StatsOut:
    get_run(db, run_id)
    counts = status_counts(db, run_id, now)
    active = db.execute(
        select(func.count(func.distinct(Answer.annotator_id))).where(
            Answer.run_id == run_id, Answer.created_at >= now - timedelta(minutes=5)
        )
    ).scalar_one()
    last_minute = db.execute(
        select(func.count(Answer.id)).where(
            Answer.run_id == run_id, Answer.created_at >= now - timedelta(minutes=1)
        )
    ).scalar_one()
    return StatsOut(
        pending=counts.get("pending", 0),
        leased=counts.get("leased", 0),
        expired=counts.get("expired", 0),
        answered=counts.get("answered", 0),
        skipped=counts.get("skipped", 0),
        cant_tell=counts.get("cant_tell", 0),
        withdrawn=counts.get("withdrawn", 0),
        annotators_active=active,
        answers_last_minute=last_minute,
    )
