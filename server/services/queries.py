"""Queries: a batch reserves budget in the transaction that stores it; claim; skip."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, bindparam, insert, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from server.db import is_postgres
from server.errors import (
    DomainError,
    DuplicatePixel,
    PixelOutOfRange,
    QueryNotFound,
    RunFinished,
    UnknownImage,
)
from server.models import Image, Query, UTCDateTime
from server.queue import Dispatcher
from server.schemas import QueryIn, QueryOut, Region, query_pixels
from server.services import budget
from server.services.leases import LeaseBook, held_by, query_rows, refusal
from server.services.runs import get_run, require_active


def _query_out(q: Row[Any]) -> QueryOut:
    return QueryOut(
        id=q.id,
        run_id=q.run_id,
        image_id=q.image_id,
        y=q.y,
        x=q.x,
        group=q.group,
        score=q.score,
        status=q.status,
        lease_expires_at=q.lease_expires_at,
        skip_reason=q.skip_reason,
        image_key=q.key,
        image_width=q.width,
        image_height=q.height,
        region=q.region,
    )


def query_outs(db: Session, ids: Sequence[int]) -> list[QueryOut]:
    return [_query_out(q) for q in query_rows(db, ids)]


def _is_pixel_conflict(exc: IntegrityError) -> bool:
    """The unique (run, image, y, x) constraint, by name (PostgreSQL) or columns (SQLite)."""
    text_ = str(exc.orig)
    return "uq_queries_pixel" in text_ or "queries.run_id, queries.image_id" in text_


def list_page(db: Session, run_id: int, after: int, limit: int) -> list[QueryOut]:
    """Queries of a run with id > ``after``, oldest first: every pixel ever asked, in any
    status, so a restarted trainer can rebuild what it asked."""
    get_run(db, run_id)
    ids = db.scalars(
        select(Query.id)
        .where(Query.run_id == run_id, Query.id > after)
        .order_by(Query.id)
        .limit(limit)
    ).all()
    return query_outs(db, ids)


def _check_pixels(db: Session, run_id: int, items: Sequence[QueryIn]) -> None:
    seen: set[tuple[int, int, int]] = set()
    for it in items:
        key = (it.image_id, it.y, it.x)
        if key in seen:
            raise DuplicatePixel(
                f"Pixel (y={it.y}, x={it.x}) of image {it.image_id} is twice in the batch."
            )
        seen.add(key)
    image_ids = {it.image_id for it in items}
    sizes = {
        r.id: (r.width, r.height)
        for r in db.execute(
            select(Image.id, Image.width, Image.height).where(
                Image.run_id == run_id, Image.id.in_(image_ids)
            )
        )
    }
    for it in items:
        if it.image_id not in sizes:
            raise UnknownImage(f"Image {it.image_id} is not registered in run {run_id}.")
        w, h = sizes[it.image_id]
        if it.x >= w or it.y >= h:
            raise PixelOutOfRange(
                f"Pixel (y={it.y}, x={it.x}) lies outside image {it.image_id} ({w}x{h})."
            )
        if it.region is not None:
            _check_box(it.region, it.image_id, w, h)


def _check_box(r: Region, image_id: int, w: int, h: int) -> None:
    if r.top + r.height > h or r.left + r.width > w:
        raise PixelOutOfRange(
            f"The region's box (top={r.top}, left={r.left}, {r.height} rows x {r.width} "
            f"columns) leaves image {image_id} ({w}x{h})."
        )


def _region_json(it: QueryIn) -> dict[str, Any] | None:
    return None if it.region is None else it.region.model_dump()


def _insert(db: Session, run_id: int, items: Sequence[QueryIn], now: datetime) -> list[int]:
    rows = [
        {
            "run_id": run_id,
            "image_id": it.image_id,
            "y": it.y,
            "x": it.x,
            "group": it.group,
            "score": it.score,
            "status": "pending",
            "created_at": now,
            "region": _region_json(it),
            "pixels": query_pixels(it.region),
        }
        for it in items
    ]
    stmt = insert(Query).returning(Query.id, sort_by_parameter_order=True)
    return list(db.scalars(stmt, rows))


_INSERT_PG = text("""
INSERT INTO queries (run_id, image_id, y, x, "group", score, status, created_at, region, pixels)
SELECT :run_id, t.image_id, t.y, t.x, t.grp, t.score, 'pending', :now, CAST(t.region AS json),
       t.pixels
FROM unnest(CAST(:image_ids AS integer[]), CAST(:ys AS integer[]), CAST(:xs AS integer[]),
            CAST(:groups AS varchar[]), CAST(:scores AS double precision[]),
            CAST(:regions AS text[]), CAST(:pixels AS integer[]))
     WITH ORDINALITY AS t(image_id, y, x, grp, score, region, pixels, ord)
ORDER BY t.ord
RETURNING id, image_id, y, x
""").bindparams(bindparam("now", type_=UTCDateTime))


def _insert_pg(db: Session, run_id: int, items: Sequence[QueryIn], now: datetime) -> list[int]:
    """One statement with array parameters (PostgreSQL): far less work than a VALUES list."""
    params = {
        "run_id": run_id,
        "now": now,
        "image_ids": [it.image_id for it in items],
        "ys": [it.y for it in items],
        "xs": [it.x for it in items],
        "groups": [it.group for it in items],
        "scores": [float(it.score) for it in items],
        "regions": [None if it.region is None else it.region.model_dump_json() for it in items],
        "pixels": [query_pixels(it.region) for it in items],
    }
    ids = {(r.image_id, r.y, r.x): r.id for r in db.execute(_INSERT_PG, params)}
    return [ids[(it.image_id, it.y, it.x)] for it in items]  # pixels are unique in a batch


def create_batch(
    db: Session, queue: Dispatcher, run_id: int, items: Sequence[QueryIn], now: datetime
) -> list[int]:
    """Store the batch and reserve its budget in one transaction; all or nothing."""
    if get_run(db, run_id).status != "active":
        raise RunFinished()
    _check_pixels(db, run_id, items)
    try:
        store = _insert_pg if is_postgres(db) else _insert
        ids = store(db, run_id, items, now)
    except IntegrityError as exc:
        db.rollback()
        if not _is_pixel_conflict(exc):
            raise
        raise DuplicatePixel("A pixel of the batch was already asked in this run.") from exc
    try:
        budget.reserve(db, run_id, sum(query_pixels(it.region) for it in items))
    except DomainError:
        db.rollback()
        raise
    db.commit()
    queue.enqueue(run_id, ids)
    return ids


def claim(
    db: Session,
    queue: Dispatcher,
    run_id: int,
    annotator_id: int,
    n: int,
    lease_s: float,
    now: datetime,
) -> list[QueryOut]:
    # On PostgreSQL every statement of a claim stands alone (the lease is one atomic UPDATE
    # that returns what the annotator needs): no BEGIN and COMMIT round trips.
    autocommit = is_postgres(db) and not db.in_transaction()
    if autocommit:
        db.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
    try:
        if run_id not in queue.known_runs:  # runs are never deleted: one lookup per process
            get_run(db, run_id)
            queue.known_runs.add(run_id)
        book = LeaseBook(db, run_id, annotator_id, lease_s, now)
        rows = queue.claim(book, n)
        if not rows:  # finishing a run releases all its queries: only then ask why
            require_active(db, run_id)
        return [_query_out(q) for q in rows]
    finally:
        if autocommit:
            db.close()  # the connection goes back with its isolation level reset


def skip(
    db: Session,
    queue: Dispatcher,
    query_id: int,
    annotator_id: int,
    now: datetime,
    reason: str | None = None,
    lead_time_ms: int | None = None,
) -> QueryOut:
    """Give a leased query up: status ``skipped`` with its ``reason`` (None: none given) and
    the milliseconds the person spent on it (``lead_time_ms``, None: not measured; counted in
    the budget's ``skipped_seconds``), its reservation released. Refused like an answer in
    the same state (a lease of the caller's that expired: 410). What it returns is read
    before the commit, as an answer's is: a read after it would begin a transaction of its
    own, on SQLite a write transaction that queues for the lock again, and a request whose
    skip was committed could then time out with a 503."""
    stmt = (
        update(Query)
        .where(Query.id == query_id, *held_by(annotator_id, now))
        .values(
            status="skipped",
            lease_expires_at=None,
            skipped_at=now,
            skip_reason=reason,
            skip_lead_time_ms=lead_time_ms,
        )
        .returning(Query.run_id, Query.pixels)
        .execution_options(synchronize_session=False)
    )
    done = db.execute(stmt).one_or_none()
    if done is None:
        cols = (Query.id, Query.run_id, Query.status, Query.annotator_id, Query.lease_expires_at)
        row = db.execute(select(*cols).where(Query.id == query_id)).one_or_none()
        if row is None:
            raise QueryNotFound(f"Query {query_id} does not exist.")
        require_active(db, row.run_id)
        raise refusal(row, annotator_id, now)
    run_id = done.run_id
    budget.settle(db, run_id, reserved=-done.pixels, answered=0)
    out = query_outs(db, [query_id])[0]
    db.commit()
    queue.ack(run_id, [query_id])
    return out
