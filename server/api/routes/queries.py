from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Body, Query, Request, Response
from fastapi.concurrency import run_in_threadpool

from server.api.deps import (
    DB,
    Annotator,
    AnswerReader,
    Config,
    Cursor,
    Id,
    Now,
    Queue,
    Trainer,
    Waiting,
    json_response,
)
from server.api.openapi import errors
from server.schemas import QueriesIn, QueryOut
from server.schemas_answers import (
    AnswerIn,
    AnswerOut,
    AnswersOut,
    AnswersPage,
    BatchAnswersIn,
    ClaimIn,
    ClaimOut,
    QueriesPage,
    QueryIdsOut,
    SkipIn,
    UndoOut,
)
from server.services import answers, queries
from server.wakeups import RECHECK_SECONDS

router = APIRouter(prefix="/api/v1", tags=["queries"])


# The hot routes (the trainer's batches, claims, answers) return their model already as JSON
# bytes, made in the worker thread that built it. Returned as a model, FastAPI would validate
# it again against ``response_model`` in one more trip through the thread pool, which under
# 32 annotators cost more wall time than the database work. The OpenAPI schema is the same.


@router.post(
    "/runs/{run_id}/queries",
    status_code=201,
    response_model=QueryIdsOut,
    responses=errors(404, 409),
)
def create_queries(
    run_id: Id, data: QueriesIn, db: DB, queue: Queue, now: Now, wakeups: Waiting, _: Trainer
) -> Response:
    ids = queries.create_batch(db, queue, run_id, data.queries, now)
    wakeups.notify(run_id)  # claims waiting for this run's queries (server/wakeups.py)
    return json_response(QueryIdsOut(ids=ids), 201)


@router.post("/runs/{run_id}/claims", response_model=ClaimOut, responses=errors(404, 409))
async def claim(
    run_id: Id,
    data: ClaimIn,
    db: DB,
    queue: Queue,
    cfg: Config,
    me: Annotator,
    wakeups: Waiting,
    request: Request,
) -> Response:
    """Lease up to ``n`` pending queries; with ``wait_seconds``, a claim that finds none waits
    for the run's new queries (server/wakeups.py) and claims again, until it gets some or the
    time is up (then an empty list, as without waiting). The database work runs in the thread
    pool, as a plain ``def`` route's would; the wait runs on the event loop and holds no
    thread (server/wakeups.py)."""
    lease = data.lease_seconds or cfg.default_lease_seconds
    deadline = time.monotonic() + data.wait_seconds

    def attempt() -> Response | None:
        """One claim, in a worker thread: the response, or None (nothing yet) with the session
        closed in the same thread, so that no lock or connection is held while waiting and
        none waits for a free thread to be let go (on SQLite every thread may be waiting for
        the write lock this session holds)."""
        now = request.app.state.clock()  # a lease starts when its claim succeeds
        got = queries.claim(db, queue, run_id, me.id, data.n, lease, now)
        if got:
            return json_response(ClaimOut(queries=got))
        db.close()
        return None

    while True:
        seen = wakeups.seen(run_id)
        out = await run_in_threadpool(attempt)
        if out is not None:
            return out
        left = deadline - time.monotonic()
        if left <= 0:
            return json_response(ClaimOut(queries=[]))
        await wakeups.wait(run_id, seen, min(left, RECHECK_SECONDS))


@router.post(
    "/queries/{query_id}/answer", response_model=AnswerOut, responses=errors(404, 409, 410)
)
def answer(query_id: Id, data: AnswerIn, db: DB, queue: Queue, now: Now, me: Annotator) -> Response:
    return json_response(answers.answer(db, queue, query_id, me, data, now))


@router.post("/runs/{run_id}/answers", response_model=AnswersOut, responses=errors(404, 409, 410))
def answer_batch(
    run_id: Id, data: BatchAnswersIn, db: DB, queue: Queue, now: Now, me: Annotator
) -> Response:
    done = answers.answer_batch(db, queue, run_id, me, data.answers, now)
    return json_response(AnswersOut(answers=done))


@router.post("/queries/{query_id}/skip", response_model=QueryOut, responses=errors(404, 409, 410))
def skip(
    query_id: Id,
    db: DB,
    queue: Queue,
    now: Now,
    me: Annotator,
    data: Annotated[SkipIn | None, Body()] = None,
) -> Response:
    data = data or SkipIn()
    return json_response(
        queries.skip(db, queue, query_id, me.id, now, data.reason, data.lead_time_ms)
    )


@router.post("/queries/{query_id}/undo", response_model=UndoOut, responses=errors(404, 409))
def undo(query_id: Id, db: DB, queue: Queue, now: Now, cfg: Config, me: Annotator) -> Response:
    return json_response(answers.undo(db, queue, query_id, me, now, cfg.default_lease_seconds))


@router.get("/runs/{run_id}/answers", responses=errors(404))
def answers_since(
    run_id: Id,
    db: DB,
    me: AnswerReader,
    after: Cursor = 0,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> AnswersPage:
    return answers.answers_since(db, run_id, after, limit, advance=me.role == "trainer")


@router.get("/runs/{run_id}/queries", responses=errors(404))
def list_queries(
    run_id: Id,
    db: DB,
    _: AnswerReader,
    after: Cursor = 0,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> QueriesPage:
    page = queries.list_page(db, run_id, after, limit)
    return QueriesPage(queries=page, cursor=page[-1].id if page else after)
