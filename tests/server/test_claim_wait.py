"""A claim with ``wait_seconds`` waits on the server for the run's new queries (server/wakeups.py)
instead of the annotator polling again: it gets the queries posted while it waits, as soon as
they are stored, and an empty list when the time is up."""

from __future__ import annotations

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
    w = Wakeups()
    seen = w.seen(1)
    w.notify(2)
    start = time.monotonic()
    assert not w.wait(1, seen, 0.05)
    assert time.monotonic() - start >= 0.05
    w.notify(1)
    assert w.wait(1, seen, RECHECK_SECONDS)  # already changed: no sleep
