"""The session mode's server side (issue 11): withdraw, release, pace, finishing twice."""

from __future__ import annotations

from datetime import timedelta

from client.api import ServiceClient
from tests.server.conftest import World
from tests.server.test_bad_input import snapshot

RUNS = "/api/v1/runs"


def _withdraw(w: World, ids: list[int], who: str = "trainer"):
    return w.post(f"{RUNS}/{w.run_id}/queries/withdraw", who, {"ids": ids})


def _statuses(w: World) -> dict[int, str]:
    page = w.get(f"{RUNS}/{w.run_id}/queries", "trainer").json()["queries"]
    return {q["id"]: q["status"] for q in page}


def _three(w: World) -> tuple[int, int, int]:
    """An answered, a leased (to alice) and a pending query."""
    answered, leased, pending = w.ask([(0, 0), (0, 1), (0, 2)]).json()["ids"]
    assert [q["id"] for q in w.claim(n=1)] == [answered]
    assert w.answer(answered).status_code == 200
    assert [q["id"] for q in w.claim(n=1)] == [leased]
    return answered, leased, pending


def test_withdraw_releases_pending_and_is_idempotent(world: World) -> None:
    answered, leased, pending = _three(world)
    assert world.budget()["reserved"] == 2
    r = _withdraw(world, [pending, leased, answered])
    assert r.status_code == 200, r.text
    assert r.json() == {
        "withdrawn": [pending],
        "kept": [{"id": leased, "status": "leased"}, {"id": answered, "status": "answered"}],
    }
    b = world.budget()
    assert (b["reserved"], b["answered"], b["remaining"], b["withdrawn"]) == (1, 1, 18, 1)
    assert _statuses(world) == {answered: "answered", leased: "leased", pending: "withdrawn"}
    again = _withdraw(world, [pending])
    assert again.status_code == 200 and again.json() == {"withdrawn": [pending], "kept": []}
    assert world.budget() == b
    # the withdrawn query is no more in the queue (Redis included); the leased one stays leased
    assert world.claim("bob", n=10) == []
    assert world.answer(leased).status_code == 200


def test_withdrawn_query_takes_no_answer_or_skip(world: World) -> None:
    [first, second] = world.ask([(1, 0), (1, 1)]).json()["ids"]
    assert _withdraw(world, [second]).status_code == 200
    for r in (
        world.answer(second),
        world.post(f"/api/v1/queries/{second}/skip", "alice"),
        world.post(
            f"{RUNS}/{world.run_id}/answers",
            "alice",
            {"answers": [{"query_id": second, "class_id": 1}]},
        ),
    ):
        assert r.status_code == 410, r.text
        assert r.json()["error"]["code"] == "query_withdrawn"
    assert [q["id"] for q in world.claim(n=5)] == [first]
    assert world.budget()["answered"] == 0


def test_withdraw_refusals_change_nothing(world: World) -> None:
    answered, leased, pending = _three(world)
    url = world.env.settings.database_url
    before, budget = snapshot(url), world.budget()
    cases = [
        (_withdraw(world, [leased, answered]), 409, "not_withdrawable"),
        (_withdraw(world, [leased]), 409, "not_withdrawable"),
        (_withdraw(world, [pending], who="alice"), 403, "forbidden"),
        (_withdraw(world, [pending], who="viewer"), 403, "forbidden"),
        (_withdraw(world, [pending, 999]), 404, "query_not_found"),
        (_withdraw(world, [pending, pending]), 400, "bad_request"),
        (_withdraw(world, []), 422, "validation_error"),
    ]
    other = world.post(RUNS, "trainer", {**_run_of(world), "name": "other"}).json()["id"]
    r = world.post(f"{RUNS}/{other}/queries/withdraw", "trainer", {"ids": [pending]})
    cases.append((r, 404, "query_not_found"))
    for r, status, code in cases:
        assert (r.status_code, r.json()["error"]["code"]) == (status, code), r.text
    assert snapshot(url)["queries_state"] == before["queries_state"]
    assert world.budget() == budget
    assert [q["id"] for q in world.claim("bob", n=5)] == [pending]  # still queued


def _run_of(w: World) -> dict:
    run = w.get(f"{RUNS}/{w.run_id}", "viewer").json()
    return {k: run[k] for k in ("classes", "target_pixels", "budget_rate")}


def test_release_returns_own_leases_at_once(world: World) -> None:
    ids = world.ask([(2, x) for x in range(4)]).json()["ids"]
    mine = [q["id"] for q in world.claim("alice", n=3, lease=300)]
    [bobs] = [q["id"] for q in world.claim("bob", n=1, lease=300)]
    assert world.answer(mine[0]).status_code == 200
    r = world.post("/api/v1/queries/release", "alice", {"ids": [*mine, bobs]})
    assert r.status_code == 200, r.text
    assert r.json() == {"released": mine[1:]}
    assert _statuses(world) == {
        ids[0]: "answered",
        ids[1]: "pending",
        ids[2]: "pending",
        ids[3]: "leased",
    }
    assert world.budget()["reserved"] == 3  # released leases stay reserved: they are pending
    again = world.post("/api/v1/queries/release", "alice", {"ids": mine[1:]})
    assert again.status_code == 200 and again.json() == {"released": []}
    # no lease expiry to wait for: another annotator gets them now
    assert sorted(q["id"] for q in world.claim("bob", n=5)) == mine[1:]
    assert world.answer(mine[1]).status_code == 409  # alice holds it no more


def test_release_refusals(world: World) -> None:
    [q] = world.ask([(3, 3)]).json()["ids"]
    world.claim("alice", n=1)
    before = snapshot(world.env.settings.database_url)
    for who, ids, status in (("trainer", [q], 403), ("viewer", [q], 403), ("alice", [q, 999], 404)):
        r = world.post("/api/v1/queries/release", who, {"ids": ids})
        assert r.status_code == status, r.text
    assert snapshot(world.env.settings.database_url) == before


def test_finishing_a_finished_run_is_refused(world: World) -> None:
    url = f"{RUNS}/{world.run_id}"
    patch = world.env.client.patch
    first = patch(url, json={"status": "finished"}, headers=world.h("trainer"))
    assert first.status_code == 200 and first.json()["status"] == "finished"
    before = snapshot(world.env.settings.database_url)
    for who in ("trainer", "admin"):
        r = patch(url, json={"status": "finished"}, headers=world.h(who))
        assert r.status_code == 409 and r.json()["error"]["code"] == "run_finished", r.text
        assert "already finished" in r.json()["error"]["message"]
    assert snapshot(world.env.settings.database_url) == before


class Frozen:
    """The app's clock stopped (rates are exact), moved only by the test."""

    def __init__(self, world: World) -> None:
        self.now = world.env.clock()
        world.env.client.app.state.clock = lambda: self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def _pace(w: World, who: str = "viewer") -> dict:
    r = w.get(f"{RUNS}/{w.run_id}/pace", who)
    assert r.status_code == 200, r.text
    return r.json()


def test_pace_on_a_seeded_history(world: World) -> None:
    clock = Frozen(world)
    assert _pace(world) == {
        "window_s": 300,
        "answers_per_minute": 0.0,
        "active_annotators": 0,
        "annotators": [],
        "pending": 0,
        "leased": 0,
        "queue_minutes": None,
        "budget_left": 20,
        "eta_minutes": None,
    }
    world.ask([(y, x) for y in range(2) for x in range(6)])  # 12 pending
    alice = world.claim("alice", n=6)
    for q in alice[:5]:
        assert world.answer(q["id"]).status_code == 200
    assert world.post(f"/api/v1/queries/{alice[5]['id']}/skip", "alice").status_code == 200
    assert world.answer(alice[0]["id"], class_id=0, correction=True).status_code == 200
    for q in world.claim("bob", n=2):
        assert world.answer(q["id"], who="bob").status_code == 200
    world.claim("bob", n=1)  # leased, unanswered
    fresh = _pace(world, "alice")  # everything just now: measured over 60 s, not 0
    assert fresh["answers_per_minute"] == 8.0
    clock.advance(120)
    pace = _pace(world)
    ids = {a["name"]: a["id"] for a in pace["annotators"]}
    assert pace == {
        "window_s": 300,
        "answers_per_minute": 4.0,  # 5 answers + 1 skip + 2 answers in 120 s
        "active_annotators": 2,
        "annotators": [
            {
                "id": ids["alice"],
                "name": "alice",
                "answered": 5,
                "skipped": 1,
                "answers_per_minute": 3.0,
            },
            {
                "id": ids["bob"],
                "name": "bob",
                "answered": 2,
                "skipped": 0,
                "answers_per_minute": 1.0,
            },
        ],
        "pending": 3,
        "leased": 1,
        "queue_minutes": 1.0,  # 4 queries at 4 a minute
        "budget_left": 13,  # 20 - 7 answered
        "eta_minutes": 3.25,
    }
    assert ids["alice"] < ids["bob"]
    assert _pace(world, "trainer") == pace and _pace(world, "bob") == pace
    world.env.client.patch(
        f"{RUNS}/{world.run_id}", json={"status": "finished"}, headers=world.h("trainer")
    )
    clock.advance(400)  # everything is older than the window now
    late = _pace(world)
    assert (late["answers_per_minute"], late["active_annotators"]) == (0.0, 0)
    assert (late["queue_minutes"], late["eta_minutes"], late["pending"]) == (None, None, 0)
    # bob's lease released by the finish is no skip of his
    assert [(a["answered"], a["skipped"]) for a in late["annotators"]] == [(5, 1), (2, 0)]


def test_pace_window_and_refusals(world: World) -> None:
    assert world.get(f"{RUNS}/{world.run_id}/pace?window_s=600", "viewer").json()["window_s"] == 600
    for bad in ("window_s=10", "window_s=99999", "window_s=x"):
        r = world.get(f"{RUNS}/{world.run_id}/pace?{bad}", "viewer")
        assert r.status_code == 422 and r.json()["error"]["code"] == "validation_error"
    r = world.get(f"{RUNS}/999/pace", "viewer")
    assert r.status_code == 404 and r.json()["error"]["code"] == "run_not_found"
    assert world.env.client.get(f"{RUNS}/{world.run_id}/pace").status_code == 401


def test_the_client_calls_against_the_server(world: World) -> None:
    """ServiceClient's session calls (client/session.py) on the real app, every backend."""
    transport = world.env.client._transport  # the TestClient's ASGI transport

    def as_(who: str) -> ServiceClient:
        return ServiceClient("http://testserver", world.tokens[who], transport=transport)

    trainer, alice = as_("trainer"), as_("alice")
    ids = trainer.post_queries(
        world.run_id, [{"image_id": world.image_id, "y": 3, "x": x} for x in range(3)]
    )
    [leased] = [q["id"] for q in world.claim("alice", n=1)]
    out = trainer.withdraw(world.run_id, ids[1:])
    assert out == {"withdrawn": ids[1:], "kept": []}
    assert alice.release([leased]) == {"released": [leased]}
    assert trainer.pace(world.run_id)["pending"] == 1
    assert trainer.finish_run(world.run_id)["status"] == "finished"
    assert trainer.finish_run(world.run_id)["status"] == "finished"  # twice: the run as it is
