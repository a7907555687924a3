"""A claim with ``wait_seconds`` waits on the server for the run's new queries (server/wakeups.py)
instead of the annotator polling again: it gets the queries posted while it waits, as soon as
they are stored, and an empty list when the time is up."""

from __future__ import annotations

import asyncio
import threading
import time

from server.wakeups import RECHECK_SECONDS, Wakeups


def _claim(world, who: str, wait: float) -> tuple[list[dict], float]:
    start = time.monotonic()
    r = world.post(f"/api/v1/runs/{world.run_id}/claims", who, {"n": 5, "wait_seconds": wait})
    assert r.status_code == 200, r.text
    return r.json()["queries"], time.monotonic() - start


def test_waiting_claim_gets_queries_posted_while_it_waits(world):
    poster = threading.Timer(0.3, lambda: world.ask([(0, 1), (0, 2)]))
    poster.start()
    got, seconds = _claim(world, "alice", 5.0)
    poster.join()
    assert sorted(q["x"] for q in got) == [1, 2]
    assert all(q["status"] == "leased" for q in got)
    assert 0.25 <= seconds < 4.0  # woken by the post, not at the end of its wait
    assert world.claim("bob") == []  # leased once


def test_waiting_claim_returns_empty_when_the_time_is_up(world):
    got, seconds = _claim(world, "alice", 0.4)
    assert got == [] and seconds >= 0.4


def test_waiting_claim_answers_at_once_when_queries_are_pending(world):
    world.ask([(0, 3)])
    got, seconds = _claim(world, "alice", 5.0)
    assert [q["x"] for q in got] == [3] and seconds < 2.0


def test_finishing_the_run_ends_a_waiting_claim(world):
    def finish() -> None:
        world.env.client.patch(
            f"/api/v1/runs/{world.run_id}", json={"status": "finished"}, headers=world.h("trainer")
        )

    finisher = threading.Timer(0.3, finish)
    finisher.start()
    start = time.monotonic()
    r = world.post(f"/api/v1/runs/{world.run_id}/claims", "alice", {"n": 1, "wait_seconds": 8})
    finisher.join()
    assert r.status_code == 409 and r.json()["error"]["code"] == "run_finished"
    assert time.monotonic() - start < 4.0


def test_claim_wait_bounds(world):
    url = f"/api/v1/runs/{world.run_id}/claims"
    for wait in (-1, 10.5):
        r = world.post(url, "alice", {"n": 1, "wait_seconds": wait})
        assert r.status_code == 422 and r.json()["error"]["code"] == "validation_error"


def test_wakeups_wake_only_for_their_run():
    async def check() -> None:
        w = Wakeups()
        seen = w.seen(1)
        w.notify(2)
        start = time.monotonic()
        assert not await w.wait(1, seen, 0.05)
        assert time.monotonic() - start >= 0.05
        w.notify(1)
        assert await w.wait(1, seen, RECHECK_SECONDS)  # already changed: no sleep

    asyncio.run(check())


def test_wakeups_wake_a_waiting_claim_from_another_thread():
    """``notify`` from a worker thread (where queries are stored) wakes a claim waiting on the
    event loop at once, and leaves no waiter behind."""

    async def check() -> float:
        w = Wakeups()
        seen = w.seen(7)
        threading.Timer(0.1, w.notify, args=(7,)).start()
        start = time.monotonic()
        assert await w.wait(7, seen, 5.0)
        assert not w._waiting
        return time.monotonic() - start

    assert 0.09 <= asyncio.run(check()) < 1.0


def test_waiting_claims_hold_no_server_thread(world):
    """More waiting claims than the server has threads (``Settings.threads``): the trainer's
    post of new queries is not held up behind them (a waiting claim held a thread of the pool
    for its whole wait, so the post waited for the first claim to give up), and the waiting
    claims get what it posts, each query once."""
    waiters = world.env.settings.threads + 2
    results: list[list[dict]] = []
    lock = threading.Lock()

    def wait_claim(i: int) -> None:
        got, _ = _claim(world, ("alice", "bob")[i % 2], 3.0)
        with lock:
            results.append(got)

    threads = [threading.Thread(target=wait_claim, args=(i,)) for i in range(waiters)]
    for t in threads:
        t.start()
    time.sleep(0.5)  # every claim found nothing and waits
    start = time.monotonic()
    r = world.ask([(0, x) for x in range(8)])
    posted = time.monotonic() - start
    assert r.status_code == 201, r.text
    for t in threads:
        t.join()
    assert posted < 1.5, f"the post waited {posted:.1f} s behind {waiters} waiting claims"
    xs = sorted(q["x"] for got in results for q in got)
    assert xs == list(range(8))  # every posted query leased once, to a waiting claim
