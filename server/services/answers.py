"""Answers: single and all-or-nothing batch, corrections, undo, and reads since a cursor.

Every transaction that inserts an answer first moves (and so locks) the run's budget row, so
answer ids are assigned in commit order per run: a reader after cursor c never misses a row.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, delete, insert, select, update
from sqlalchemy.orm import Session

from server.db import begin_write, is_postgres
from server.errors import (
    BadRequest,
    NothingToUndo,
    NotLeased,
    NotYourAnswer,
    QueryNotFound,
    RunFinished,
    UnknownClass,
)
from server.models import Answer, Query, Run, Token
from server.queue import Dispatcher
from server.schemas_answers import AnswerIn, AnswerOut, AnswersPage, BatchAnswerItem, UndoOut
from server.schemas_tokens import Me
from server.services import budget
from server.services.answers_pg import answer_pg
from server.services.leases import held_by, refusal
from server.services.queries import query_outs
from server.services.runs import class_ids, get_run, require_active

_QCOLS = (
    Query.id,
    Query.run_id,
    Query.image_id,
    Query.y,
    Query.x,
    Query.group,
    Query.status,
    Query.annotator_id,
    Query.lease_expires_at,
    Query.region,
    Query.pixels,
)


def _out(
    q: Row[Any], a: Row[Any], class_id: int, lead: int | None, corr: bool, me: Me
) -> AnswerOut:
    return AnswerOut(
        id=a.id,
        query_id=q.id,
        run_id=q.run_id,
        image_id=q.image_id,
        y=q.y,
        x=q.x,
        class_id=class_id,
        group=q.group,
        annotator=me.name,
        lead_time_ms=lead,
        correction=corr,
        created_at=a.created_at,
        region=q.region,
    )


def _insert(db: Session, rows: list[dict[str, Any]]) -> list[Row[Any]]:
    stmt = insert(Answer).returning(Answer.id, Answer.created_at, sort_by_parameter_order=True)
    return list(db.execute(stmt, rows).all())


def _lease_filter(ids: Sequence[int], me: Me, now: datetime) -> list[Any]:
    return [Query.id.in_(list(ids)), *held_by(me.id, now)]


def answer(
    db: Session, queue: Dispatcher, query_id: int, me: Me, data: AnswerIn, now: datetime
) -> AnswerOut:
    if not data.correction and is_postgres(db):
        item = BatchAnswerItem(
            query_id=query_id, class_id=data.class_id, lead_time_ms=data.lead_time_ms
        )
        done = answer_pg(db, None, me, [item], now)
        if done is not None:
            queue.ack(done[0].run_id, [query_id])
            return done[0]
    found = db.execute(
        select(*_QCOLS, Run.classes, Run.status.label("run_status"))
        .join(Run, Run.id == Query.run_id)
        .where(Query.id == query_id)
    ).one_or_none()
    if found is None:
        raise QueryNotFound(f"Query {query_id} does not exist.")
    if found.run_status != "active":
        raise RunFinished(f"Run {found.run_id} is {found.run_status}: it takes no more answers.")
    if data.class_id not in {int(c["id"]) for c in found.classes}:
        raise UnknownClass(f"Class {data.class_id} is not one of run {found.run_id}'s classes.")
    if data.correction:
        if found.status != "answered":
            raise NotLeased(f"Query {query_id} is {found.status}; only answers can be corrected.")
        if found.annotator_id != me.id and me.role != "admin":  # who answered it holds it
            raise NotYourAnswer(
                f"Query {query_id} was answered by another annotator; only they or an admin "
                "may correct it."
            )
        budget.settle(db, found.run_id, reserved=0, answered=0)  # lock: ids in commit order
    else:
        stmt = update(Query).where(*_lease_filter([query_id], me, now))
        stmt = stmt.values(status="answered", lease_expires_at=None)
        if db.execute(stmt.execution_options(synchronize_session=False)).rowcount != 1:
            db.rollback()
            raise refusal(found, me.id, now)
        budget.settle(db, found.run_id, reserved=-found.pixels, answered=found.pixels)
    row = {
        "run_id": found.run_id,
        "query_id": query_id,
        "class_id": data.class_id,
        "annotator_id": me.id,
        "lead_time_ms": data.lead_time_ms,
        "correction": data.correction,
        "created_at": now,
    }
    (a,) = _insert(db, [row])
    db.commit()
    if not data.correction:
        queue.ack(found.run_id, [query_id])
    return _out(found, a, data.class_id, data.lead_time_ms, data.correction, me)


def _rows_in_run(db: Session, run_id: int, ids: Sequence[int]) -> dict[int, Row[Any]]:
    """``_QCOLS`` of queries ``ids`` by id; 404 for the first that is not in the run."""
    stmt = select(*_QCOLS).where(Query.id.in_(list(ids)), Query.run_id == run_id)
    rows = {r.id: r for r in db.execute(stmt)}
    for qid in ids:
        if qid not in rows:
            raise QueryNotFound(f"Query {qid} does not exist in run {run_id}.")
    return rows


def answer_batch(
    db: Session,
    queue: Dispatcher,
    run_id: int,
    me: Me,
    items: Sequence[BatchAnswerItem],
    now: datetime,
) -> list[AnswerOut]:
    """Answer many leased queries at once; any refusal stores nothing."""
    run = get_run(db, run_id)
    if run.status != "active":
        raise RunFinished(f"Run {run_id} is {run.status}: it takes no more answers.")
    classes = class_ids(run)
    ids = [it.query_id for it in items]
    if len(set(ids)) != len(ids):
        raise BadRequest("A query id appears twice in the batch.")
    for it in items:
        if it.class_id not in classes:
            raise UnknownClass(f"Class {it.class_id} is not one of run {run_id}'s classes.")
    if is_postgres(db):
        db.rollback()  # end the read transaction: the answer statement commits by itself
        done = answer_pg(db, run_id, me, items, now)
        if done is not None:
            queue.ack(run_id, ids)
            return done
    rows = _rows_in_run(db, run_id, ids)
    stmt = update(Query).where(Query.run_id == run_id, *_lease_filter(ids, me, now))
    stmt = stmt.values(status="answered", lease_expires_at=None).returning(Query.id)
    got = set(db.execute(stmt.execution_options(synchronize_session=False)).scalars())
    if len(got) != len(ids):
        db.rollback()
        require_active(db, run_id)  # finished since the check above: say so
        raise refusal(rows[next(q for q in ids if q not in got)], me.id, now)
    pixels = sum(rows[q].pixels for q in ids)
    budget.settle(db, run_id, reserved=-pixels, answered=pixels)
    inserted = _insert(
        db,
        [
            {
                "run_id": run_id,
                "query_id": it.query_id,
                "class_id": it.class_id,
                "annotator_id": me.id,
                "lead_time_ms": it.lead_time_ms,
                "correction": False,
                "created_at": now,
            }
            for it in items
        ],
    )
    db.commit()
    queue.ack(run_id, ids)
    return [
        _out(rows[it.query_id], a, it.class_id, it.lead_time_ms, False, me)
        for it, a in zip(items, inserted, strict=True)
    ]


def undo(
    db: Session, queue: Dispatcher, query_id: int, me: Me, now: datetime, lease_s: float
) -> UndoOut:
    """Withdraw my latest answer if the trainer has not read it; else ask for a correction.
    My skip of the query is withdrawn likewise (:func:`_unskip`). The reply is read before
    the commit (see ``queries.skip``)."""
    cols = (Query.run_id, Query.pixels, Query.status, Query.skipped_at, Query.annotator_id)
    found = db.execute(select(*cols).where(Query.id == query_id)).one_or_none()
    if found is None:
        raise QueryNotFound(f"Query {query_id} does not exist.")
    run_id = found.run_id
    require_active(db, run_id)
    cursor = db.execute(
        select(Run.consumed_cursor).where(Run.id == run_id).with_for_update()
    ).scalar_one()
    skipped_by_me = found.annotator_id == me.id or me.role == "admin"
    if found.status == "skipped" and found.skipped_at is not None and skipped_by_me:
        return _unskip(db, queue, query_id, run_id, found.pixels, me, now, lease_s)
    last = db.execute(
        select(Answer.id, Answer.annotator_id, Answer.correction)
        .where(Answer.query_id == query_id)
        .order_by(Answer.id.desc())
        .limit(1)
    ).one_or_none()
    if last is None or (last.annotator_id != me.id and me.role != "admin"):
        raise NothingToUndo(f"You have no answer on query {query_id} to undo.")
    reopened = last.id > cursor and not last.correction
    if last.id > cursor:
        db.execute(delete(Answer).where(Answer.id == last.id))
    if reopened:
        db.execute(
            update(Query)
            .where(Query.id == query_id)
            .values(
                status="leased",
                annotator_id=me.id,
                lease_expires_at=now + timedelta(seconds=lease_s),
            )
            .execution_options(synchronize_session=False)
        )
        budget.settle(db, run_id, reserved=found.pixels, answered=-found.pixels)
    out = UndoOut(reopened=reopened, query=query_outs(db, [query_id])[0])  # before the commit
    db.commit()
    if reopened:
        queue.enqueue(run_id, [query_id])  # its stream entry was acked; time the new lease
    return out


def _unskip(
    db: Session,
    queue: Dispatcher,
    query_id: int,
    run_id: int,
    pixels: int,
    me: Me,
    now: datetime,
    lease_s: float,
) -> UndoOut:
    """Withdraw a skip (the caller holds the run row's lock): the query is leased again to
    the caller, its reason and its seconds (``skip_lead_time_ms``) cleared, its pixels
    reserved again if the budget still holds them (else 409 ``budget_exceeded`` and nothing
    changes: the trainer may have spent them since)."""
    reopened = db.execute(
        update(Query)
        .where(Query.id == query_id, Query.status == "skipped", Query.skipped_at.is_not(None))
        .values(
            status="leased",
            annotator_id=me.id,
            lease_expires_at=now + timedelta(seconds=lease_s),
            skipped_at=None,
            skip_reason=None,
            skip_lead_time_ms=None,
        )
        .execution_options(synchronize_session=False)
    ).rowcount
    if not reopened:  # another undo of it won the run's lock first
        raise NothingToUndo(f"You have no skip on query {query_id} to undo.")
    budget.reserve(db, run_id, pixels)  # refused: the request's transaction rolls back
    out = UndoOut(reopened=True, query=query_outs(db, [query_id])[0])  # before the commit
    db.commit()
    queue.enqueue(run_id, [query_id])  # its stream entry was acked; time the new lease
    return out


def answers_since(db: Session, run_id: int, after: int, limit: int, advance: bool) -> AnswersPage:
    """Answers with id > after, by id. ``advance`` moves the run's consumed cursor (trainer)."""
    if advance:
        begin_write(db)  # a GET that moves the cursor
    get_run(db, run_id)
    if advance:
        db.execute(select(Run.id).where(Run.id == run_id).with_for_update())
    rows = db.execute(
        select(
            Answer.id,
            Answer.query_id,
            Answer.run_id,
            Query.image_id,
            Query.y,
            Query.x,
            Answer.class_id,
            Query.group,
            Token.name.label("annotator"),
            Answer.lead_time_ms,
            Answer.correction,
            Answer.created_at,
            Query.region,
        )
        .join(Query, Query.id == Answer.query_id)
        .join(Token, Token.id == Answer.annotator_id)
        .where(Answer.run_id == run_id, Answer.id > after)
        .order_by(Answer.id)
        .limit(limit)
    ).all()
    cursor = rows[-1].id if rows else after
    if advance and rows:
        db.execute(
            update(Run)
            .where(Run.id == run_id, Run.consumed_cursor < cursor)
            .values(consumed_cursor=cursor)
            .execution_options(synchronize_session=False)
        )
    db.commit()
    return AnswersPage(answers=[AnswerOut.model_validate(r._mapping) for r in rows], cursor=cursor)
