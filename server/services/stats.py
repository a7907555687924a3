"""Live counters of a run for the dashboard."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from server.models import Answer, Query
from server.schemas import StatsOut
from server.services.runs import get_run


def get_stats(db: Session, run_id: int, now: datetime) -> StatsOut:
    get_run(db, run_id)
    rows = db.execute(
        select(Query.status, Query.skip_reason, func.count())
        .where(Query.run_id == run_id)
        .group_by(Query.status, Query.skip_reason)
    ).all()
    counts: dict[str, int] = {}
    for status, _, n in rows:
        counts[status] = counts.get(status, 0) + n
    cant_tell = sum(n for _, reason, n in rows if reason == "cant_tell")
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
        answered=counts.get("answered", 0),
        skipped=counts.get("skipped", 0),
        cant_tell=cant_tell,
        withdrawn=counts.get("withdrawn", 0),
        annotators_active=active,
        answers_last_minute=last_minute,
    )
