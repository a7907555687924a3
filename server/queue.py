"""Dispatch of pending queries to annotators.

Two implementations share one interface. The database is the record: every claim moves rows
from ``pending`` (or an expired ``leased``) to ``leased`` with one atomic conditional UPDATE,
so a stale or duplicated dispatcher entry can never hand one query to two live leases. A
dispatcher reaches the database only through the claim's ``LeaseBook``
(``server/services/leases.py``), which owns the commits.

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
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from sqlalchemy import Row

from server.queue_scripts import ACK, CANDIDATES, ENQUEUE

if TYPE_CHECKING:
    from server.services.leases import LeaseBook

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
    """Which queries a claim tries. The database work (and its commits) is the
    :class:`~server.services.leases.LeaseBook`'s, which the claim service passes in."""

    name: str
    known_runs: set[int]  # runs seen to exist (runs are never deleted): no lookup per claim

    def enqueue(self, run_id: int, query_ids: Sequence[int]) -> None: ...

    def claim(self, book: LeaseBook, n: int) -> list[Row[Any]]: ...

    def ack(self, run_id: int, query_ids: Sequence[int]) -> None: ...

    def rebuild(self, run_id: int, live_ids: Callable[[], Sequence[int]]) -> None: ...

    def ping(self) -> bool: ...


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

    def claim(self, book: LeaseBook, n: int) -> list[Row[Any]]:
        return book.lease(n)

    def ack(self, run_id: int, query_ids: Sequence[int]) -> None:
        return None

    def rebuild(self, run_id: int, live_ids: Callable[[], Sequence[int]]) -> None:
        return None

    def ping(self) -> bool:
        return True


class RedisQueue:
    name = "redis"

    def __init__(self, client: redis.Redis, prefix: str = "adamcu") -> None:
        self.r = client
        self.prefix = prefix
        self.known_runs: set[int] = set()
        self._enqueue = client.register_script(ENQUEUE)
        self._candidates = client.register_script(CANDIDATES)
        self._ack = client.register_script(ACK)

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

    def rebuild(self, run_id: int, live_ids: Callable[[], Sequence[int]]) -> None:
        """Recreate the run's stream from the record's pending and leased rows (``live_ids``)."""
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
            ids = list(live_ids())
            self.enqueue(run_id, ids)
            log.info("rebuilt redis stream of run %s with %d queries", run_id, len(ids))
        finally:
            self.r.delete(lock)

    def _fetch(self, book: LeaseBook, consumer: str, n: int) -> list[tuple[str, int]]:
        """Up to ``n`` (entry id, query id) candidates: expired PEL entries (at most once a
        second), then new ones; all already timed to the book's lease."""
        stream, _, cursor, _ = self._keys(book.run_id)
        keys = [stream, cursor, self._gate(book.run_id)]
        args = [GROUP, consumer, MAX_IDLE_MS, n, AUTOCLAIM_EVERY_MS, _lease_idle(book.lease_s)]
        try:
            flat = self._candidates(keys=keys, args=args)
        except redis.ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            self.rebuild(book.run_id, book.live_ids)
            flat = self._candidates(keys=keys, args=args)
        return [(flat[i], int(flat[i + 1])) for i in range(0, len(flat), 2)]

    def claim(self, book: LeaseBook, n: int) -> list[Row[Any]]:
        """Lease through the stream; when Redis cannot be reached, lease straight from the
        database (the record), as the embedded queue does. The stream is rebuilt later."""
        try:
            return self._claim(book, n)
        except redis.ConnectionError:
            log.warning("redis unreachable: claim for run %s leases from the database", book.run_id)
            book.abandon()
            return book.lease(n)

    def _claim(self, book: LeaseBook, n: int) -> list[Row[Any]]:
        consumer = f"a{book.annotator_id}"
        leased: list[Row[Any]] = []
        for _attempt in range(4):
            cands = self._fetch(book, consumer, n - len(leased))
            if not cands:
                if not leased and book.has_unqueued(ENQUEUE_GRACE_S):
                    self.rebuild(book.run_id, book.live_ids)
                    continue
                break
            qids = [q for _, q in cands]
            got = book.lease(n, qids)
            mine = {r.id for r in got}
            # Usually every candidate was leased once and the fetch timed it already; else
            # re-time, release or ack the rest (bookkeeping only: the committed leases stand
            # whatever Redis says).
            if len(mine) != len(cands) or len(set(qids)) != len(qids):
                try:
                    self._settle(book, consumer, cands, mine)
                except redis.RedisError:
                    log.exception("redis bookkeeping after a claim failed for run %s", book.run_id)
            leased.extend(got)
            if len(leased) >= n:
                break
        if len(leased) < n:  # the DB is the record: expired leases the PEL has not timed out
            late = book.lease_expired(n - len(leased))
            if late:
                try:
                    self._retime(book.run_id, consumer, [r.id for r in late], book.lease_s)
                except redis.RedisError:
                    log.exception("redis bookkeeping after a claim failed for run %s", book.run_id)
            leased.extend(late)
        return sorted(leased, key=lambda r: r.id)

    def _retime(self, run_id: int, consumer: str, qids: list[int], lease_s: float) -> None:
        stream, entries, _, _ = self._keys(run_id)
        eids = [e for e in self.r.hmget(entries, qids) if e]
        if eids:
            self.r.xclaim(stream, GROUP, consumer, 0, eids, idle=_lease_idle(lease_s), justid=True)

    def _settle(
        self, book: LeaseBook, consumer: str, cands: list[tuple[str, int]], got: set[int]
    ) -> None:
        """Settle candidates the database did not lease once: re-time the entries of queries
        leased to others, release pending ones, ack dead or duplicate ones, and point the
        entries hash at each leased query's entry (the fetch already timed those)."""
        stream, entries, _, _ = self._keys(book.run_id)
        primary: dict[int, str] = {}
        dead: list[str] = []
        for eid, qid in cands:
            if qid in primary:
                dead.append(eid)
            else:
                primary[qid] = eid
        others = [q for q in primary if q not in got]
        states = book.states(others)
        pipe = self.r.pipeline(transaction=False)
        if got:
            pipe.hset(entries, mapping={q: primary[q] for q in got})
        for q in others:
            status, expires = states.get(q, ("gone", None))
            if status == "leased" and expires is not None:
                left_ms = max(int((expires - book.now).total_seconds() * 1000), 0)
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
