"""The database side of a claim: lease readers and writers, each ending its own transaction.

A dispatcher (``server/queue.py``) decides which queries to try; it touches the database
only through a :class:`LeaseBook`, which the claim service makes. The book leases with one
atomic conditional UPDATE per step and commits it, and ends every read it makes, so the
dispatcher never commits (or holds open) the service's transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, select, update
from sqlalchemy.orm import Session

from server.db import is_postgres
from server.errors import AlreadyAnswered, DomainError, LeaseExpired, NotLeased, QueryWithdrawn
from server.models import Image, Query

# What a claim returns per query: the row's columns and its image's key and size.
LEASED_COLS = (
    Query.id,
    Query.run_id,
    Query.image_id,
    Query.y,
    Query.x,
    Query.group,
    Query.score,
    Query.status,
    Query.lease_expires_at,
    Query.skip_reason,
    Query.region,
    Image.key,
    Image.width,
    Image.height,
)


def refusal(q: Any, annotator_id: int, now: datetime) -> DomainError:
    """Why the holder's conditional UPDATE of query ``q`` (its ``id``, ``status``,
    ``annotator_id``, ``lease_expires_at``) matched nothing: the one answer for an answer and
    a skip alike (a lease of the caller's that expired is 410 for both)."""
    if q.status == "answered":
        return AlreadyAnswered(f"Query {q.id} is already answered.")
    if q.status == "withdrawn":
        return QueryWithdrawn(f"Query {q.id} was withdrawn by the trainer; nothing was stored.")
    if q.status == "leased" and q.annotator_id == annotator_id and q.lease_expires_at < now:
        return LeaseExpired(f"Your lease on query {q.id} expired; claim again.")
    return NotLeased(f"Query {q.id} is {q.status} and not leased to you.")


def held_by(annotator_id: int, now: datetime) -> list[Any]:
    """The conditions of a query that ``annotator_id`` holds a live lease on at ``now``."""
    return [
        Query.status == "leased",
        Query.annotator_id == annotator_id,
        Query.lease_expires_at >= now,
    ]


def lease_rows(
    db: Session,
    run_id: int,
    annotator_id: int,
    until: datetime,
    now: datetime,
    n: int,
    ids: Sequence[int] | None = None,
    expired_only: bool = False,
) -> list[Row[Any]]:
    """Atomically lease up to ``n`` claimable rows (expired leases first, then pending by id).

    Returns the leased rows (``LEASED_COLS``) by id. On PostgreSQL each UPDATE returns them
    itself (``UPDATE ... FROM images ... RETURNING``); SQLite's RETURNING cannot name another
    table, so it reads them after the update, in the same transaction. Does not commit.
    """
    leased: list[Row[Any]] = []
    pg = is_postgres(db)
    expired = (Query.status == "leased") & (Query.lease_expires_at < now)
    conds = [expired] if expired_only else [expired, Query.status == "pending"]
    if ids is not None and len(ids) <= n and not expired_only:
        conds = [expired | (Query.status == "pending")]  # no limit binds: one statement
    for cond in conds:
        want = n - len(leased)
        if want <= 0:
            break
        sub = select(Query.id).where(Query.run_id == run_id, cond)
        if ids is not None:
            sub = sub.where(Query.id.in_(ids))
        sub = sub.order_by(Query.id).limit(want)
        picked: Any = sub.scalar_subquery()
        if pg:
            # a MATERIALIZED CTE runs the locking LIMIT once: as a subquery of the UPDATE the
            # planner may run it again per row of the join with images and lease over ``want``
            cte = sub.with_for_update(skip_locked=True).cte("picked").prefix_with("MATERIALIZED")
            picked = select(cte.c.id)
        stmt = (
            update(Query)
            .where(Query.id.in_(picked), cond)
            .values(status="leased", annotator_id=annotator_id, lease_expires_at=until)
            .execution_options(synchronize_session=False)
        )
        if pg:
            stmt = stmt.where(Image.id == Query.image_id).returning(*LEASED_COLS)
            leased.extend(db.execute(stmt).all())
            continue
        leased.extend(query_rows(db, list(db.execute(stmt.returning(Query.id)).scalars())))
    return sorted(leased, key=lambda r: r.id)


def query_rows(db: Session, ids: Sequence[int]) -> list[Row[Any]]:
    """``LEASED_COLS`` of queries ``ids``, by id (columns, not ORM objects: cheaper)."""
    if not ids:
        return []
    stmt = select(*LEASED_COLS).join(Image, Image.id == Query.image_id)
    return list(db.execute(stmt.where(Query.id.in_(list(ids))).order_by(Query.id)).all())


def live_query_ids(db: Session, run_id: int) -> list[int]:
    """Ids of the run's pending and leased queries, by id; ends the read."""
    live = select(Query.id).where(Query.run_id == run_id, Query.status.in_(("pending", "leased")))
    ids = list(db.execute(live.order_by(Query.id)).scalars())
    db.rollback()  # end the read transaction (a reader holds WAL pages until then)
    return ids


class LeaseBook:
    """One claim's access to the record: leases commit, reads end their transaction."""

    def __init__(
        self, db: Session, run_id: int, annotator_id: int, lease_s: float, now: datetime
    ) -> None:
        self.db, self.run_id, self.annotator_id = db, run_id, annotator_id
        self.lease_s, self.now = lease_s, now
        self.until = now + timedelta(seconds=lease_s)

    def lease(self, n: int, ids: Sequence[int] | None = None) -> list[Row[Any]]:
        """Lease up to ``n`` claimable rows (of ``ids`` if given) and commit."""
        db = self.db
        rows = lease_rows(db, self.run_id, self.annotator_id, self.until, self.now, n, ids)
        db.commit()
        return rows

    def lease_expired(self, n: int) -> list[Row[Any]]:
        """Lease up to ``n`` rows whose lease expired (whatever a dispatcher says) and commit."""
        db = self.db
        rows = lease_rows(db, self.run_id, self.annotator_id, self.until, self.now, n, None, True)
        db.commit()
        return rows

    def abandon(self) -> None:
        """Roll back whatever the caller began (before leasing straight from the record)."""
        self.db.rollback()

    def live_ids(self) -> list[int]:
        return live_query_ids(self.db, self.run_id)

    def has_unqueued(self, grace_s: float) -> bool:
        """A pending row older than ``grace_s``: a dispatcher that gave nothing lost its entry."""
        q = select(Query.created_at).where(Query.run_id == self.run_id, Query.status == "pending")
        oldest = self.db.execute(q.order_by(Query.id).limit(1)).scalar()
        self.db.rollback()
        return oldest is not None and oldest < self.now - timedelta(seconds=grace_s)

    def states(self, ids: Sequence[int]) -> dict[int, tuple[str, datetime | None]]:
        """Status and lease end of queries ``ids`` (absent ids are gone)."""
        if not ids:
            return {}
        rows = self.db.execute(
            select(Query.id, Query.status, Query.lease_expires_at).where(Query.id.in_(list(ids)))
        )
        states = {r.id: (r.status, r.lease_expires_at) for r in rows}
        self.db.rollback()
        return states
