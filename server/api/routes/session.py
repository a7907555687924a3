"""The session mode's routes: withdraw (trainer), release (annotator), pace (read)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from server.api.deps import DB, Annotator, Id, Now, Queue, Reader, Trainer
from server.api.openapi import errors
from server.services import pace, session
from server.session_schemas import PACE_WINDOW_S, PaceOut, QueryIdsIn, ReleaseOut, WithdrawOut

router = APIRouter(prefix="/api/v1", tags=["session"])


@router.post("/runs/{run_id}/queries/withdraw", responses=errors(400, 404, 409))
def withdraw(run_id: Id, data: QueryIdsIn, db: DB, queue: Queue, _: Trainer) -> WithdrawOut:
    return session.withdraw(db, queue, run_id, data.ids)


@router.post("/queries/release", responses=errors(400, 404))
def release(data: QueryIdsIn, db: DB, queue: Queue, me: Annotator) -> ReleaseOut:
    return session.release(db, queue, me, data.ids)


@router.get("/runs/{run_id}/pace", responses=errors(404))
def get_pace(
    run_id: Id,
    db: DB,
    now: Now,
    _: Reader,
    window_s: Annotated[int, Query(ge=60, le=3600)] = PACE_WINDOW_S,
) -> PaceOut:
    return pace.get_pace(db, run_id, now, window_s)
