"""The seconds a skip costs (issue 24): a skip (plain or "can't tell") may carry its
``lead_time_ms``; ``/budget`` counts them apart (``skipped_seconds``) and in ``spent_seconds``,
per group and in all; undoing the skip takes them back; a bad lead time changes nothing."""

from __future__ import annotations

import pytest

from tests.server.conftest import World


def skip(world: World, qid: int, who: str = "alice", body: object = None):
    return world.post(f"/api/v1/queries/{qid}/skip", who, body)


def seconds(b: dict, group: str | None = None) -> tuple[float, float, float]:
    slot = b if group is None else b["groups"][group]
    return slot["answered_seconds"], slot["skipped_seconds"], slot["spent_seconds"]


def test_a_skips_lead_time_is_counted_apart_and_in_the_seconds_spent(world: World) -> None:
    world.ask([(0, 0), (0, 1)], group="high")
    world.ask([(0, 2), (0, 3)], group="random")
    q1, q2, q3, q4 = (q["id"] for q in world.claim())
    assert world.answer(q1, lead_time_ms=2000).status_code == 200
    r = skip(world, q2, body={"lead_time_ms": 1200})
    assert r.status_code == 200 and r.json()["status"] == "skipped", r.text
    r = skip(world, q3, body={"reason": "cant_tell", "lead_time_ms": 750})
    assert r.status_code == 200 and r.json()["skip_reason"] == "cant_tell", r.text
    assert skip(world, q4).status_code == 200  # no lead time: counts 0
    b = world.budget()
    assert seconds(b) == (2.0, 1.95, 3.95)
    assert seconds(b, "high") == (2.0, 1.2, 3.2)
    assert seconds(b, "random") == (0.0, 0.75, 0.75)
    assert seconds(b, "medium") == (0.0, 0.0, 0.0)
    assert (b["skipped"], b["cant_tell"], b["answered"]) == (3, 1, 1)


def test_undoing_a_skip_leases_it_again_and_takes_its_seconds_back(world: World) -> None:
    world.ask([(0, 0)])
    (q,) = world.claim()
    assert (
        skip(world, q["id"], body={"reason": "cant_tell", "lead_time_ms": 1500}).status_code == 200
    )
    assert world.budget()["reserved"] == 0
    r = world.post(f"/api/v1/queries/{q['id']}/undo", "alice")
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["reopened"] is True
    assert (got["query"]["status"], got["query"]["skip_reason"]) == ("leased", None)
    b = world.budget()
    assert seconds(b) == (0.0, 0.0, 0.0)
    assert (b["reserved"], b["skipped"], b["cant_tell"]) == (1, 0, 0)
    r = world.post(f"/api/v1/queries/{q['id']}/undo", "alice")  # nothing left to undo
    assert r.status_code == 409 and r.json()["error"]["code"] == "nothing_to_undo"
    assert world.answer(q["id"], lead_time_ms=400).status_code == 200  # its lease is mine
    assert seconds(world.budget()) == (0.4, 0.0, 0.4)


def test_only_the_skipper_undoes_a_skip(world: World) -> None:
    world.ask([(0, 0)])
    (q,) = world.claim()
    assert skip(world, q["id"], body={"lead_time_ms": 900}).status_code == 200
    r = world.post(f"/api/v1/queries/{q['id']}/undo", "bob")
    assert r.status_code == 409 and r.json()["error"]["code"] == "nothing_to_undo"
    b = world.budget()
    assert (seconds(b), b["skipped"], b["reserved"]) == ((0.0, 0.9, 0.9), 1, 0)


def test_undoing_a_skip_whose_pixels_were_spent_since_is_refused(world_factory) -> None:
    world = world_factory(budget_total=1)
    world.ask([(0, 0)])
    (q,) = world.claim()
    assert skip(world, q["id"], body={"lead_time_ms": 900}).status_code == 200
    assert world.ask([(0, 1)]).status_code == 201  # the trainer spends the pixel again
    r = world.post(f"/api/v1/queries/{q['id']}/undo", "alice")
    assert r.status_code == 409 and r.json()["error"]["code"] == "budget_exceeded", r.text
    b = world.budget()
    assert (seconds(b), b["skipped"], b["reserved"]) == ((0.0, 0.9, 0.9), 1, 1)
    listed = world.get(f"/api/v1/runs/{world.run_id}/queries", "trainer").json()["queries"]
    assert [x["status"] for x in listed] == ["skipped", "pending"]


@pytest.mark.parametrize("bad", [-1, 2**31, 1.5, "soon", None, [1]])
def test_a_bad_lead_time_on_a_skip_is_422_and_changes_nothing(world: World, bad) -> None:
    world.ask([(0, 0)])
    (q,) = world.claim()
    body = {"lead_time_ms": bad} if bad is not None else {"lead_time_ms": 5, "extra": 1}
    r = skip(world, q["id"], body=body)
    assert r.status_code == 422, r.text
    b = world.budget()
    assert (b["reserved"], b["skipped"], seconds(b)) == (1, 0, (0.0, 0.0, 0.0))
    assert skip(world, q["id"], body={"lead_time_ms": 10}).status_code == 200  # still leased


def test_metrics_count_the_skips_seconds_by_their_time(world: World) -> None:
    world.ask([(0, 0), (0, 1)])
    q1, q2 = (q["id"] for q in world.claim())
    url = f"/api/v1/runs/{world.run_id}/metrics"
    assert skip(world, q1, body={"lead_time_ms": 1200}).status_code == 200
    world.env.clock.advance(1)
    assert world.post(url, "trainer", {"iteration": 0, "miou": 1.0}).status_code == 201
    world.env.clock.advance(1)
    assert world.answer(q2, lead_time_ms=2400).status_code == 200
    world.env.clock.advance(1)
    assert world.post(url, "trainer", {"iteration": 1, "miou": 2.0}).status_code == 201
    got = world.get(url, "viewer").json()["metrics"]
    assert [m["annotator_seconds"] for m in got] == [1.2, 3.6]
