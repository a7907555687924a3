"""Evaluation metrics posted by the trainer, each with the annotators' seconds spent by then."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from server.models import Answer, Metric, Query
from server.schemas_reports import MetricIn, MetricOut
from server.services.budget import answered_ms, skipped_ms
from server.services.runs import get_run


def _seconds_by_then() -> Any:
    """The run's answers' and skips' lead times (ms) up to each metric's time: two
    correlated sums."""
    answers = (
        select(answered_ms())
        .where(Answer.run_id == Metric.run_id, Answer.created_at <= Metric.created_at)
        .correlate(Metric)
        .scalar_subquery()
    )
    skips = (
        select(skipped_ms())
        .where(Query.run_id == Metric.run_id, Query.skipped_at <= Metric.created_at)
        .correlate(Metric)
        .scalar_subquery()
    )
    return answers + skips


def _out(m: Metric, ms: int) -> MetricOut:
    return MetricOut(
        id=m.id,
        iteration=m.iteration,
        labeled_pixels=m.labeled_pixels,
        miou=m.miou,
        per_class_iou=m.per_class_iou,
        split=m.split,
        created_at=m.created_at,
        annotator_seconds=int(ms) / 1000,
    )


def add_metric(db: Session, run_id: int, data: MetricIn, now: datetime) -> MetricOut:
    get_run(db, run_id)
    row = Metric(run_id=run_id, created_at=now, **data.model_dump())
    db.add(row)
    db.flush()
    ms = db.execute(select(_seconds_by_then()).where(Metric.id == row.id)).scalar_one()
    out = _out(row, ms)  # before the commit (see queries.skip)
    db.commit()
    return out


def list_metrics(db: Session, run_id: int) -> list[MetricOut]:
    get_run(db, run_id)
    rows = db.execute(
        select(Metric, _seconds_by_then())
        .where(Metric.run_id == run_id)
        .order_by(Metric.iteration, Metric.id)
    ).all()
    return [_out(m, ms) for m, ms in rows]
