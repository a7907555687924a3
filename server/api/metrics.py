"""Prometheus ``/metrics``: request counts and latencies, and the runs' state from the database.

Request metrics live in this process (with ``--workers N`` the server points
``PROMETHEUS_MULTIPROC_DIR`` at a fresh folder, so every scrape sums all workers). Queue depth,
budget counters and the answer count are read from the database at scrape time, so they agree
whichever worker answers. Answers per second: ``rate(adamcu_answers_total[1m])``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from fastapi import APIRouter, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from server.api.deps import DB, Reader
from server.models import Answer, Query, Run

REQUESTS = Counter("adamcu_http_requests", "HTTP requests answered", ["method", "route", "status"])
LATENCY = Histogram(
    "adamcu_http_request_duration_seconds",
    "Time from the request to the end of the response",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)

router = APIRouter(tags=["system"])


def observe(method: str, route: str, status: int, seconds: float) -> None:
    REQUESTS.labels(method, route, str(status)).inc()
    LATENCY.labels(method, route).observe(seconds)


class RunsCollector:
    """The active runs' queue depth and budget, and the answers of every run, at scrape time."""

    def __init__(self, db: Session) -> None:
        self.db = db

    def collect(self) -> Iterator[Metric]:
        queries = GaugeMetricFamily(
            "adamcu_queries", "Queries of active runs by status", labels=["run", "status"]
        )
        budget = GaugeMetricFamily(
            "adamcu_budget_pixels", "Pixel budget of active runs", labels=["run", "kind"]
        )
        answers = CounterMetricFamily("adamcu_answers", "Answers given, corrections included")
        active = self.db.execute(
            select(Run.id, Run.budget_total, Run.reserved, Run.answered).where(
                Run.status == "active"
            )
        ).all()
        for run_id, total, reserved, answered in active:
            kinds = {"total": total, "reserved": reserved, "answered": answered}
            kinds["left"] = total - reserved - answered
            for kind, value in kinds.items():
                budget.add_metric([str(run_id), kind], value)
        by_status = self.db.execute(
            select(Query.run_id, Query.status, func.count())
            .where(Query.run_id.in_([row[0] for row in active]))
            .group_by(Query.run_id, Query.status)
        ).all()
        for run_id, status, n in by_status:
            queries.add_metric([str(run_id), status], n)
        answers.add_metric([], self.db.scalar(select(func.count()).select_from(Answer)) or 0)
        yield from (queries, budget, answers)


def exposition(db: Session) -> bytes:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        processes = CollectorRegistry()
        MultiProcessCollector(processes)
    else:
        processes = REGISTRY
    runs = CollectorRegistry()
    runs.register(RunsCollector(db))
    return generate_latest(processes) + generate_latest(runs)


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text"}},
)
def metrics(db: DB, _: Reader) -> Response:
    """Prometheus text format; any valid token may scrape (a viewer token is enough)."""
    body = exposition(db)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
