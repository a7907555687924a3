"""Evaluation metrics posted by the trainer."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from server.models import Metric
from server.schemas_reports import MetricIn, MetricOut
from server.services.runs import get_run


def _out(m: Metric) -> MetricOut:
    return MetricOut(
        id=m.id,
        iteration=m.iteration,
        labeled_pixels=m.labeled_pixels,
        miou=m.miou,
        per_class_iou=m.per_class_iou,
        split=m.split,
        created_at=m.created_at,
    )


def add_metric(db: Session, run_id: int, data: MetricIn, now: datetime) -> MetricOut:
    get_run(db, run_id)
    row = Metric(run_id=run_id, created_at=now, **data.model_dump())
    db.add(row)
    db.commit()
    return _out(row)


def list_metrics(db: Session, run_id: int) -> list[MetricOut]:
    get_run(db, run_id)
    rows = db.execute(
        select(Metric).where(Metric.run_id == run_id).order_by(Metric.iteration, Metric.id)
    ).scalars()
    return [_out(m) for m in rows]
