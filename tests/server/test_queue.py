"""Dispatch: the same behaviour from the embedded queue and Redis Streams.

The database is the record: duplicated or stale stream entries, and a Redis that loses all its
data, never hand one query to two live leases and never lose a query.
"""

from __future__ import annotations

import threading
import time

import pytest
import redis

from server.queue import GROUP, RedisQueue
from server.services import queries
from server.services.recovery import rebuild_missing_streams
from tests.server.conftest import REDIS_URL


def _claim_all(world, who: str, n: int = 50) -> list[int]:
    got: list[int] = []
    while batch := world.claim(who, n=3):
        got.extend(q["id"] for q in batch)
        assert len(got) <= n
    return got


def test_concurrent_claims_never_share_a_query(world_factory):
    world = world_factory(budget_total=32)
    ids = world.ask([(y, x) for y in range(4) for x in range(8)]).json()["ids"]
    claimed: list[int] = []
    lock = threading.Lock()

    errors: list[BaseException] = []

    def annotator(name: str) -> None:
        try:
            while batch := world.claim(name, n=3):
                with lock:
                    claimed.extend(q["id"] for q in batch)
        except BaseException as exc:  # surface a dead thread as a test failure
            errors.append(exc)

    threads = [threading.Thread(target=annotator, args=(w,)) for w in ["alice", "bob"] * 3]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(claimed) == sorted(ids)


def test_short_real_lease_expires(world):
    """Service level with a 1 s lease in real time (the API allows 5..3600 s)."""
    world.ask([(0, 0)])
    app = world.env.client.app
    alice, bob = (world.get("/api/v1/me", who).json()["id"] for who in ("alice", "bob"))
    with app.state.sessionmaker() as db:
        (q,) = queries.claim(db, app.state.queue, world.run_id, alice, 5, 1.0, world.env.clock())
        assert queries.claim(db, app.state.queue, world.run_id, bob, 5, 60, world.env.clock()) == []
        time.sleep(1.2)
        (again,) = queries.claim(db, app.state.queue, world.run_id, bob, 5, 60, world.env.clock())
    assert again.id == q.id and again.status == "leased"
    assert world.answer(q.id, "bob").status_code == 200


def _redis_only(world) -> RedisQueue:
    queue = world.env.client.app.state.queue
    if not isinstance(queue, RedisQueue):
        pytest.skip("Redis Streams only")
    return queue


def test_flush_mid_run_loses_nothing(world):
    _redis_only(world)
    ids = world.ask([(0, x) for x in range(8)] + [(1, x) for x in range(4)]).json()["ids"]
    held = world.claim("alice", n=3, lease=30)
    assert world.answer(held[0]["id"], "alice").status_code == 200
    redis.Redis.from_url(REDIS_URL).flushdb()
    pending = _claim_all(world, "bob")
    assert sorted(pending) == sorted(set(ids) - {q["id"] for q in held})  # each exactly once
    world.env.clock.advance(31)  # alice's two unanswered leases expire
    back = _claim_all(world, "bob")
    assert sorted(back) == sorted(q["id"] for q in held[1:])
    for qid in pending + back:
        assert world.answer(qid, "bob").status_code == 200
    b = world.budget()
    assert (b["answered"], b["reserved"]) == (12, 0)


def test_stale_and_duplicate_entries_are_harmless(world):
    queue = _redis_only(world)
    ids = world.ask([(0, 0), (0, 1), (0, 2)]).json()["ids"]
    (a,) = world.claim("alice", n=1)
    world.answer(a["id"], "alice")
    (b,) = world.claim("alice", n=1)
    stream = queue._keys(world.run_id)[0]
    for qid in (a["id"], b["id"], b["id"]):  # answered and live-leased ids, twice
        queue.r.xadd(stream, {"q": qid})
    got = _claim_all(world, "bob")
    assert got == [ids[2]]
    assert world.answer(ids[2], "bob").status_code == 200
    world.env.clock.advance(200)  # b's lease expires: it comes back exactly once
    assert _claim_all(world, "bob") == [b["id"]]


def test_startup_rebuilds_a_missing_stream(world):
    queue = _redis_only(world)
    ids = world.ask([(0, 0), (0, 1)]).json()["ids"]
    queue.r.delete(*queue._keys(world.run_id))
    assert not queue.group_exists(world.run_id)
    app = world.env.client.app
    assert rebuild_missing_streams(app.state.sessionmaker, queue) == 1
    assert queue.group_exists(world.run_id)
    assert queue.r.xinfo_groups(queue._keys(world.run_id)[0])[0]["name"] == GROUP
    assert sorted(_claim_all(world, "bob")) == sorted(ids)


def test_answer_acks_the_stream_entry(world):
    queue = _redis_only(world)
    world.ask([(0, 0), (0, 1)])
    qs = world.claim("alice", n=2)
    world.post(
        f"/api/v1/runs/{world.run_id}/answers",
        "alice",
        {"answers": [{"query_id": q["id"], "class_id": 1} for q in qs]},
    )
    stream, entries, _, _ = queue._keys(world.run_id)
    assert queue.r.xlen(stream) == 0 and queue.r.hlen(entries) == 0
    assert queue.r.xpending(stream, GROUP)["pending"] == 0


def test_claims_lease_from_the_database_while_redis_is_unreachable(world):
    """The DB is the record: with Redis gone, claims still hand out every query once."""
    from server.queue import RedisQueue

    ids = world.ask([(0, x) for x in range(6)]).json()["ids"]
    world.env.client.app.state.queue = RedisQueue.from_url("redis://127.0.0.1:1/0")
    first = world.claim("alice", n=4)
    second = world.claim("bob", n=4)
    got = [q["id"] for q in first + second]
    assert sorted(got) == ids and len(set(got)) == len(got)
    assert world.answer(first[0]["id"], "alice").status_code == 200


def test_claimed_entries_are_timed_to_their_lease(world):
    """A claimed query's stream entry comes back to XAUTOCLAIM exactly when its lease ends:
    its pending-list idle time is MAX_IDLE_MS minus the lease. An entry the database did not
    lease (here: a stale duplicate of an answered query) is acked and deleted."""
    from server.queue import MAX_IDLE_MS

    queue = _redis_only(world)
    ids = world.ask([(0, 0), (0, 1)]).json()["ids"]
    stream, entries, _, _ = queue._keys(world.run_id)
    (first,) = world.claim("alice", n=1, lease=600)  # a clean claim: every candidate leased
    (entry,) = queue.r.xpending_range(stream, GROUP, "-", "+", 10)
    assert MAX_IDLE_MS - 600_000 <= entry["time_since_delivered"] <= MAX_IDLE_MS - 595_000
    assert world.answer(first["id"], "alice").status_code == 200
    queue.r.xadd(stream, {"q": first["id"]})  # stale: its query is answered
    got = world.claim("bob", n=5, lease=60)
    assert [q["id"] for q in got] == [ids[1]]
    pending = queue.r.xpending_range(stream, GROUP, "-", "+", 10)
    assert len(pending) == 1  # the stale entry is gone from the pending list
    idle = pending[0]["time_since_delivered"]
    assert MAX_IDLE_MS - 60_000 <= idle <= MAX_IDLE_MS - 60_000 + 5_000
    assert queue.r.hget(entries, ids[1]) == pending[0]["message_id"]


def test_redis_client_rides_a_restart_and_fails_fast_while_down(tmp_path, monkeypatch):
    """After Redis restarts, the first call on the pooled (now stale) connection goes through;
    while Redis is down a call fails at once, without the backoff sleeps of redis-py's default
    client (ten retries, seconds per call), so a claim leases from the database without a
    stall."""
    import redis.retry

    from tests.e2e.procs import RedisProc

    slept: list[float] = []
    real_sleep = redis.retry.sleep
    monkeypatch.setattr(redis.retry, "sleep", lambda s: (slept.append(s), real_sleep(s)))
    proc = RedisProc(tmp_path / "redis")
    proc.start()
    try:
        queue = RedisQueue.from_url(proc.url)
        assert queue.ping()
        proc.flush_and_restart(down_s=0.0)
        assert queue.ping()  # the pooled connection was stale: one immediate reconnect
        proc.stop()
        assert not queue.ping()
        assert sum(slept) == 0
    finally:
        proc.stop()
