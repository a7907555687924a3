from __future__ import annotations

from fastapi import APIRouter, Response

from server.api.deps import DB, Id, Now, Queue, Reader, Trainer, Waiting, json_response
from server.api.openapi import errors
from server.schemas import RunIn, RunOut, RunPatch
from server.schemas_budget import BudgetOut
from server.schemas_reports import MetricIn, MetricOut, MetricsOut, StatsOut
from server.services import budget, metrics, runs, stats

router = APIRouter(prefix="/api/v1/runs", tags=["runs"])


@router.post("", status_code=201)
def create_run(data: RunIn, db: DB, me: Trainer) -> RunOut:
    return runs.create_run(db, data, me)


@router.get("")
def list_runs(db: DB, me: Reader) -> list[RunOut]:
    return runs.list_runs(db, me.run_ids)


@router.get("/{run_id}", responses=errors(404))
def get_run(run_id: Id, db: DB, _: Reader) -> RunOut:
    return runs.to_out(runs.get_run(db, run_id))


@router.patch("/{run_id}", response_model=RunOut, responses=errors(404, 409))
def patch_run(
    run_id: Id, data: RunPatch, db: DB, queue: Queue, wakeups: Waiting, me: Trainer
) -> Response:
    out, released = runs.set_status(db, run_id, data.status, me.role)
    runs.forget(queue, run_id, released)
    wakeups.notify(run_id)  # waiting claims see the new status at once
    return json_response(out)


@router.get("/{run_id}/budget", responses=errors(404))
def get_budget(run_id: Id, db: DB, _: Reader) -> BudgetOut:
    return budget.get_budget(db, run_id)


@router.post("/{run_id}/metrics", status_code=201, responses=errors(404))
def add_metric(run_id: Id, data: MetricIn, db: DB, now: Now, _: Trainer) -> MetricOut:
    return metrics.add_metric(db, run_id, data, now)


@router.get("/{run_id}/metrics", responses=errors(404))
def list_metrics(run_id: Id, db: DB, _: Reader) -> MetricsOut:
    return MetricsOut(metrics=metrics.list_metrics(db, run_id))


@router.get("/{run_id}/stats", responses=errors(404))
def get_stats(run_id: Id, db: DB, now: Now, _: Reader) -> StatsOut:
    return stats.get_stats(db, run_id, now)
