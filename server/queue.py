"""Dispatch of pending queries to annotators.

Two implementations share one interface. The database is the record: every claim moves rows
from ``pending`` (or an expired ``leased``) to ``leased`` with one atomic conditional UPDATE,
so a stale or duplicated dispatcher entry can never hand one query to two live leases.

* :class:`EmbeddedQueue` claims straight from the ``queries`` table (``FOR UPDATE SKIP LOCKED``
  on PostgreSQL, a plain atomic UPDATE on SQLite, whose writers are serialised).
* :class:`RedisQueue` uses one Redis stream per run and a consumer group: enqueue is ``XADD``,
  claim is ``XAUTOCLAIM`` (expired leases) then ``XREADGROUP``; answer/skip ``XACK``. Lease
  timing lives in the PEL idle time: after a claim with lease L the entry's idle time is set to
  ``MAX_IDLE_MS - L`` so ``XAUTOCLAIM`` (min-idle ``MAX_IDLE_MS``) returns it exactly when the
  lease expires. A missing stream or group (``NOGROUP``, e.g. after ``FLUSHALL``) rebuilds the
  stream from the non-terminal rows of the database.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from sqlalchemy import Row, select, update
from sqlalchemy.orm import Session

from server.db import is_postgres
from server.models import Image, Query

log = logging.getLogger(__name__)
MAX_IDLE_MS = 3_700_000  # above the longest lease (3600 s)
GROUP = "annotators"
ENQUEUE_GRACE_S = 10.0
# XAUTOCLAIM scans up to 10 x COUNT entries of the pending list (~0.8 ms of Redis at 32
# annotators) and nearly always finds nothing; a claim runs it at most once in this many ms
# per run, or again at once after it found a full batch. Expired leases are not late for it:
# a claim that gets fewer than asked from the stream also leases expired rows straight from
# the database (the record).
AUTOCLAIM_EVERY_MS = 1000
REDIS_RETRIES = 1
REDIS_CONNECT_TIMEOUT_S = 2.0
REDIS_TIMEOUT_S = 10.0


class Dispatcher(Protocol):
    name: str
    known_runs: set[int]  # runs seen to exist (runs are never deleted): no lookup per claim

    def enqueue(self, run_id: int, query_ids: Sequence[int]) -> None: ...

    def claim(
        self, db: Session, run_id: int, annotator_id: int, n: int, lease_s: float, now: datetime
    ) -> list[Row[Any]]: ...

    def ack(self, run_id: int, query_ids: Sequence[int]) -> None: ...

    def rebuild(self, db: Session, run_id: int) -> None: ...

    def ping(self) -> bool: ...


# What a claim returns per query: the row's columns and its image's size.
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
    Image.width,
    Image.height,
)


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
    table, so it reads them after the update, in the same transaction.
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
        if pg:
            sub = sub.with_for_update(skip_locked=True)
        stmt = (
            update(Query)
            .where(Query.id.in_(sub.scalar_subquery()), cond)
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


def _lease_idle(lease_s: float) -> int:
    """The PEL idle time that makes ``XAUTOCLAIM`` (min idle ``MAX_IDLE_MS``) return an entry
    exactly when a lease of ``lease_s`` seconds taken now expires."""
    return max(MAX_IDLE_MS - int(lease_s * 1000), 0)


class EmbeddedQueue:
    name = "embedded"

    def __init__(self) -> None:
        self.known_runs: set[int] = set()

    def enqueue(self, run_id: int, query_ids: Sequence[int]) -> None:
        return None

    def claim(
        self, db: Session, run_id: int, annotator_id: int, n: int, lease_s: float, now: datetime
    ) -> list[Row[Any]]:
        rows = lease_rows(db, run_id, annotator_id, now + timedelta(seconds=lease_s), now, n)
        db.commit()
        return rows

    def ack(self, run_id: int, query_ids: Sequence[int]) -> None:
        return None

    def rebuild(self, db: Session, run_id: int) -> None:
        return None

    def ping(self) -> bool:
        return True


_ENQUEUE = """
for _, q in ipairs(ARGV) do
  redis.call('HSET', KEYS[2], q, redis.call('XADD', KEYS[1], '*', 'q', q))
end
return #ARGV
"""

_CANDIDATES = """
local stream, cursor_key, gate = KEYS[1], KEYS[2], KEYS[3]
local group, consumer, min_idle, n = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local out = {}
if redis.call('SET', gate, '1', 'PX', ARGV[5], 'NX') then
  local cur = redis.call('GET', cursor_key) or '0-0'
  local r = redis.call('XAUTOCLAIM', stream, group, consumer, min_idle, cur, 'COUNT', n)
  redis.call('SET', cursor_key, r[1])
  for _, e in ipairs(r[2]) do
    if e[2] then out[#out + 1] = e[1]; out[#out + 1] = e[2][2] end
  end
  if #out / 2 >= n then redis.call('DEL', gate) end
end
local got = #out / 2
if got < n then
  local rd = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', n - got,
                        'STREAMS', stream, '>')
  if rd then
    for _, e in ipairs(rd[1][2]) do out[#out + 1] = e[1]; out[#out + 1] = e[2][2] end
  end
end
if #out > 0 then
  -- time every candidate to the lease it is about to get (the usual outcome); the claim
  -- re-times or acks the few that the database does not lease
  local args = {stream, group, consumer, '0'}
  for i = 1, #out, 2 do args[#args + 1] = out[i] end
  args[#args + 1] = 'IDLE'; args[#args + 1] = ARGV[6]; args[#args + 1] = 'JUSTID'
  redis.call('XCLAIM', unpack(args))
end
return out
"""

_ACK = """
for _, q in ipairs(ARGV) do
  local e = redis.call('HGET', KEYS[2], q)
  if e then
    redis.call('XACK', KEYS[1], KEYS[3], e)
    redis.call('XDEL', KEYS[1], e)
    redis.call('HDEL', KEYS[2], q)
  end
end
return 1
"""


class RedisQueue:
    name = "redis"

    def __init__(self, client: redis.Redis, prefix: str = "adamcu") -> None:
        self.r = client
        self.prefix = prefix
        self.known_runs: set[int] = set()
        self._enqueue = client.register_script(_ENQUEUE)
        self._candidates = client.register_script(_CANDIDATES)
        self._ack = client.register_script(_ACK)

    @classmethod
    def from_url(cls, url: str, prefix: str = "adamcu") -> RedisQueue:
        """A client for the request path: one immediate retry on a new connection (a pooled
        connection goes stale when Redis restarts), no backoff and a bounded connect time, so
        a Redis that is down costs a claim milliseconds before it leases from the database."""
        client = redis.Redis.from_url(
            url,
            decode_responses=True,
            retry=Retry(NoBackoff(), REDIS_RETRIES),
            socket_connect_timeout=REDIS_CONNECT_TIMEOUT_S,
            socket_timeout=REDIS_TIMEOUT_S,
        )
        return cls(client, prefix)

    def _keys(self, run_id: int) -> tuple[str, str, str, str]:
        base = f"{self.prefix}:run:{run_id}"
        return f"{base}:stream", f"{base}:entries", f"{base}:cursor", f"{base}:rebuild"

    def _gate(self, run_id: int) -> str:
        return f"{self.prefix}:run:{run_id}:autoclaim-gate"

    def enqueue(self, run_id: int, query_ids: Sequence[int]) -> None:
        stream, entries, _, _ = self._keys(run_id)
        try:
            for i in range(0, len(query_ids), 500):  # short scripts: claims wait less
                self._enqueue(keys=[stream, entries], args=list(query_ids[i : i + 500]))
        except redis.RedisError:
            # The rows are committed; the next claim that finds the stream empty rebuilds it.
            log.exception("enqueue to redis failed for run %s", run_id)

    def ack(self, run_id: int, query_ids: Sequence[int]) -> None:
        stream, entries, _, _ = self._keys(run_id)
        try:
            self._ack(keys=[stream, entries, GROUP], args=list(query_ids))
        except redis.RedisError:
            log.exception("ack to redis failed for run %s (entries are reaped later)", run_id)

    def ping(self) -> bool:
        try:
            return bool(self.r.ping())
        except redis.RedisError:
            return False

    def group_exists(self, run_id: int) -> bool:
        stream = self._keys(run_id)[0]
        try:
            return any(g["name"] == GROUP for g in self.r.xinfo_groups(stream))
        except redis.ResponseError:
            return False

    def rebuild(self, db: Session, run_id: int) -> None:
        """Recreate the run's stream from the database's pending and leased rows."""
        stream, entries, cursor, lock = self._keys(run_id)
        if not self.r.set(lock, "1", nx=True, ex=30):
            deadline = time.monotonic() + 5
            while self.r.exists(lock) and time.monotonic() < deadline:
                time.sleep(0.02)
            return
        try:
            pipe = self.r.pipeline(transaction=True)  # no window without a group
            pipe.delete(stream, entries, cursor, self._gate(run_id))
            pipe.xgroup_create(stream, GROUP, id="0", mkstream=True)
            pipe.execute()
            live = select(Query.id).where(
                Query.run_id == run_id, Query.status.in_(("pending", "leased"))
            )
            ids = list(db.execute(live.order_by(Query.id)).scalars())
            db.rollback()  # end the read transaction (SQLite holds its lock until then)
            self.enqueue(run_id, ids)
            log.info("rebuilt redis stream of run %s with %d queries", run_id, len(ids))
        finally:
            self.r.delete(lock)

    def _fetch(
        self, db: Session, run_id: int, consumer: str, n: int, lease_s: float
    ) -> list[tuple[str, int]]:
        """Up to ``n`` (entry id, query id) candidates: expired PEL entries (at most once a
        second), then new ones; all already timed to a lease of ``lease_s``."""
        stream, _, cursor, _ = self._keys(run_id)
        keys = [stream, cursor, self._gate(run_id)]
        args = [GROUP, consumer, MAX_IDLE_MS, n, AUTOCLAIM_EVERY_MS, _lease_idle(lease_s)]
        try:
            flat = self._candidates(keys=keys, args=args)
        except redis.ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            self.rebuild(db, run_id)
            flat = self._candidates(keys=keys, args=args)
        return [(flat[i], int(flat[i + 1])) for i in range(0, len(flat), 2)]

    def claim(
        self, db: Session, run_id: int, annotator_id: int, n: int, lease_s: float, now: datetime
    ) -> list[Row[Any]]:
        """Lease through the stream; when Redis cannot be reached, lease straight from the
        database (the record), as the embedded queue does. The stream is rebuilt later."""
        try:
            return self._claim(db, run_id, annotator_id, n, lease_s, now)
        except redis.ConnectionError:
            log.warning("redis unreachable: claim for run %s leases from the database", run_id)
            db.rollback()
            rows = lease_rows(db, run_id, annotator_id, now + timedelta(seconds=lease_s), now, n)
            db.commit()
            return rows

    def _claim(
        self, db: Session, run_id: int, annotator_id: int, n: int, lease_s: float, now: datetime
    ) -> list[Row[Any]]:
        consumer = f"a{annotator_id}"
        until = now + timedelta(seconds=lease_s)
        leased: list[Row[Any]] = []
        for _attempt in range(4):
            cands = self._fetch(db, run_id, consumer, n - len(leased), lease_s)
            if not cands:
                if not leased and self._db_has_unqueued(db, run_id, now):
                    self.rebuild(db, run_id)
                    continue
                break
            qids = [q for _, q in cands]
            got = lease_rows(db, run_id, annotator_id, until, now, n, qids)
            db.commit()
            mine = {r.id for r in got}
            # Usually every candidate was leased once and the fetch timed it already; else
            # re-time, release or ack the rest (bookkeeping only: the committed leases stand
            # whatever Redis says).
            if len(mine) != len(cands) or len(set(qids)) != len(qids):
                try:
                    self._settle(db, run_id, consumer, cands, mine, now)
                except redis.RedisError:
                    log.exception("redis bookkeeping after a claim failed for run %s", run_id)
            leased.extend(got)
            if len(leased) >= n:
                break
        if len(leased) < n:  # the DB is the record: expired leases the PEL has not timed out
            late = lease_rows(db, run_id, annotator_id, until, now, n - len(leased), None, True)
            db.commit()
            if late:
                try:
                    self._retime(run_id, consumer, [r.id for r in late], lease_s)
                except redis.RedisError:
                    log.exception("redis bookkeeping after a claim failed for run %s", run_id)
            leased.extend(late)
        return sorted(leased, key=lambda r: r.id)

    def _retime(self, run_id: int, consumer: str, qids: list[int], lease_s: float) -> None:
        stream, entries, _, _ = self._keys(run_id)
        eids = [e for e in self.r.hmget(entries, qids) if e]
        if eids:
            self.r.xclaim(stream, GROUP, consumer, 0, eids, idle=_lease_idle(lease_s), justid=True)

    def _db_has_unqueued(self, db: Session, run_id: int, now: datetime) -> bool:
        """A pending row older than ``ENQUEUE_GRACE_S`` while the stream gave nothing: its
        entry is missing (e.g. the XADD after its commit failed). Younger rows may still be
        on their way in (a big batch is enqueued after its commit): no rebuild storm then."""
        q = select(Query.created_at).where(Query.run_id == run_id, Query.status == "pending")
        oldest = db.execute(q.order_by(Query.id).limit(1)).scalar()
        db.rollback()
        return oldest is not None and oldest < now - timedelta(seconds=ENQUEUE_GRACE_S)

    def _settle(
        self,
        db: Session,
        run_id: int,
        consumer: str,
        cands: list[tuple[str, int]],
        got: set[int],
        now: datetime,
    ) -> None:
        """Settle candidates the database did not lease once: re-time the entries of queries
        leased to others, release pending ones, ack dead or duplicate ones, and point the
        entries hash at each leased query's entry (the fetch already timed those)."""
        stream, entries, _, _ = self._keys(run_id)
        primary: dict[int, str] = {}
        dead: list[str] = []
        for eid, qid in cands:
            if qid in primary:
                dead.append(eid)
            else:
                primary[qid] = eid
        others = [q for q in primary if q not in got]
        states = {}
        if others:
            rows = db.execute(
                select(Query.id, Query.status, Query.lease_expires_at).where(Query.id.in_(others))
            )
            states = {r.id: (r.status, r.lease_expires_at) for r in rows}
            db.rollback()
        pipe = self.r.pipeline(transaction=False)
        if got:
            pipe.hset(entries, mapping={q: primary[q] for q in got})
        for q in others:
            status, expires = states.get(q, ("gone", None))
            if status == "leased" and expires is not None:
                left_ms = max(int((expires - now).total_seconds() * 1000), 0)
                idle = max(MAX_IDLE_MS - left_ms, 0)
                pipe.xclaim(stream, GROUP, consumer, 0, [primary[q]], idle=idle, justid=True)
            elif status == "pending":
                pipe.xclaim(stream, GROUP, consumer, 0, [primary[q]], idle=MAX_IDLE_MS, justid=True)
            else:
                dead.append(primary[q])
        if dead:
            pipe.xack(stream, GROUP, *dead)
            pipe.xdel(stream, *dead)
        pipe.execute()
