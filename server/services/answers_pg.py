"""PostgreSQL fast path of answering: lease check, budget move and answer rows in one statement."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, text
from sqlalchemy.exc import DataError
from sqlalchemy.orm import Session

from server.models import UTCDateTime
from server.schemas_answers import AnswerOut
from server.schemas_tokens import Me

# PostgreSQL fast path: lease check, budget move and answer rows in ONE statement that commits
# by itself, so the run row (locked by the budget move, before the answer ids are drawn) is
# never held across a round trip to this process. All or nothing: no row back means nothing
# matched; some but not all items matching divides by zero, which undoes the whole statement.
# Either way the caller explains the refusal with the slow checks.
_ANSWER_PG = (
    text("""
WITH items AS (
  SELECT * FROM unnest(CAST(:qids AS integer[]), CAST(:cids AS integer[]),
                       CAST(:leads AS integer[])) AS t(query_id, class_id, lead_time_ms)
), q AS (
  UPDATE queries SET status = 'answered', lease_expires_at = NULL FROM items
  WHERE queries.id = items.query_id AND queries.status = 'leased'
    AND queries.annotator_id = :me AND queries.lease_expires_at >= :now
    AND (CAST(:run_id AS integer) IS NULL OR queries.run_id = :run_id)
    AND EXISTS (SELECT 1 FROM runs cr, json_array_elements(cr.classes) AS e
                WHERE cr.id = queries.run_id AND e->>'id' = CAST(items.class_id AS text))
  RETURNING queries.id, queries.run_id, queries.image_id, queries.y, queries.x,
            queries."group", queries.region, queries.pixels, items.class_id, items.lead_time_ms
), r AS (
  UPDATE runs SET reserved = runs.reserved - c.n, answered = runs.answered + c.n
  FROM (SELECT run_id, sum(pixels) AS n FROM q GROUP BY run_id) AS c
  WHERE runs.id = c.run_id RETURNING runs.id
), a AS (
  INSERT INTO answers (run_id, query_id, class_id, annotator_id, lead_time_ms, correction,
                       created_at)
  SELECT q.run_id, q.id, q.class_id, :me, q.lead_time_ms, false, :now
  FROM q JOIN r ON r.id = q.run_id ORDER BY q.id
  RETURNING answers.id, answers.query_id, answers.created_at
)
SELECT a.id AS answer_id, a.created_at, q.*,
       1 / CASE WHEN (SELECT count(*) FROM q) = :n THEN 1 ELSE 0 END AS whole
FROM a JOIN q ON q.id = a.query_id
""")
    .bindparams(bindparam("now", type_=UTCDateTime))
    .columns(created_at=UTCDateTime)
)


def _fits(v: int) -> bool:
    return -(2**31) <= v < 2**31


def answer_pg(
    db: Session,
    run_id: int | None,
    me: Me,
    items: Sequence[Any],
    now: datetime,
) -> list[AnswerOut] | None:
    """Answer leased queries in one statement (PostgreSQL); ``None``: some item is refused
    (or a number does not fit the columns) and the caller's checks give the error."""
    if not all(_fits(it.query_id) and _fits(it.lead_time_ms or 0) for it in items):
        return None
    params = {
        "qids": [it.query_id for it in items],
        "cids": [it.class_id for it in items],
        "leads": [it.lead_time_ms for it in items],
        "me": me.id,
        "now": now,
        "run_id": run_id,
        "n": len(items),
    }
    autocommit = not db.in_transaction()  # else (a principal just loaded) commit at the end
    if autocommit:
        db.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
    try:
        rows = {r.id: r for r in db.execute(_ANSWER_PG, params)}
    except DataError as exc:
        if getattr(exc.orig, "sqlstate", None) != "22012":  # not the all-or-nothing guard
            raise
        rows = {}
    finally:
        if autocommit:
            db.close()  # the connection goes back (isolation reset); later work is transactional
    if len(rows) != len(items):
        db.rollback()
        return None
    db.commit()
    outs = []
    for it in items:
        r = rows[it.query_id]
        outs.append(
            AnswerOut(
                id=r.answer_id,
                query_id=r.id,
                run_id=r.run_id,
                image_id=r.image_id,
                y=r.y,
                x=r.x,
                class_id=r.class_id,
                group=r.group,
                annotator=me.name,
                lead_time_ms=r.lead_time_ms,
                correction=False,
                created_at=r.created_at,
                region=r.region,
            )
        )
    return outs
