"""Query batches and the budget they reserve; claims, leases, skips."""

from __future__ import annotations

import threading

from sqlalchemy import create_engine, func, select

from server.models import Query


def _count_queries(world) -> int:
    engine = create_engine(world.env.settings.database_url)
    with engine.connect() as conn:
        n = conn.execute(select(func.count()).select_from(Query)).scalar_one()
    engine.dispose()
    return n


def test_batch_reserves_budget(world):
    r = world.ask([(0, 0), (0, 1), (1, 0)], group="high")
    assert r.status_code == 201 and len(r.json()["ids"]) == 3
    b = world.budget()
    assert (b["expected"], b["reserved"], b["answered"], b["remaining"]) == (20, 3, 0, 17)
    assert b["groups"]["high"] == {
        "reserved": 3,
        "answered": 0,
        "answered_seconds": 0.0,
        "skipped_seconds": 0.0,
        "spent_seconds": 0.0,
    }


def test_overspending_batch_is_refused_whole(world):
    assert world.ask([(0, x) for x in range(8)] + [(1, x) for x in range(8)]).status_code == 201
    r = world.ask([(2, x) for x in range(5)])  # 16 + 5 > 20
    assert r.status_code == 409 and r.json()["error"]["code"] == "budget_exceeded"
    assert _count_queries(world) == 16
    assert world.budget()["reserved"] == 16
    assert world.ask([(2, x) for x in range(4)]).status_code == 201  # exactly the rest


def test_duplicate_pixel_refused(world):
    assert world.ask([(0, 0)]).status_code == 201
    r = world.ask([(1, 1), (0, 0)])
    assert r.status_code == 409 and r.json()["error"]["code"] == "duplicate_pixel"
    r = world.ask([(2, 2), (2, 2)])
    assert r.status_code == 409 and r.json()["error"]["code"] == "duplicate_pixel"
    assert _count_queries(world) == 1 and world.budget()["reserved"] == 1


def test_out_of_range_and_unknown_image(world):
    for pixel in [(4, 0), (0, 8)]:
        r = world.ask([(0, 0), pixel])
        assert r.status_code == 422 and r.json()["error"]["code"] == "pixel_out_of_range"
    r = world.post(
        f"/api/v1/runs/{world.run_id}/queries",
        "trainer",
        {"queries": [{"image_id": 999, "y": 0, "x": 0}]},
    )
    assert r.status_code == 422 and r.json()["error"]["code"] == "unknown_image"
    r = world.post(
        "/api/v1/runs/999/queries", "trainer", {"queries": [{"image_id": 1, "y": 0, "x": 0}]}
    )
    assert r.status_code == 404 and r.json()["error"]["code"] == "run_not_found"
    assert _count_queries(world) == 0 and world.budget()["reserved"] == 0


def test_finished_run_takes_no_queries(world):
    r = world.env.client.patch(
        f"/api/v1/runs/{world.run_id}", json={"status": "finished"}, headers=world.h("trainer")
    )
    assert r.status_code == 200 and r.json()["status"] == "finished"
    assert world.ask([(0, 0)]).json()["error"]["code"] == "run_finished"


def test_concurrent_batches_never_overspend(world_factory):
    world = world_factory(budget_total=30)
    results: list[int] = []
    barrier = threading.Barrier(8)

    def worker(i: int) -> None:
        pixels = [(i % 4, (i // 4) * 4 + k) for k in range(4)]  # disjoint pixels, 4 each
        barrier.wait()
        results.append(world.ask(pixels).status_code)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [201] * 7 + [409]  # 7 * 4 = 28 <= 30 < 32
    assert _count_queries(world) == 28
    b = world.budget()
    assert b["reserved"] == 28 and b["remaining"] == 2


def test_claim_leases_each_query_once(world):
    world.ask([(0, x) for x in range(6)])
    a = world.claim("alice", n=4)
    b = world.claim("bob", n=4)
    assert len(a) == 4 and len(b) == 2
    assert not {q["id"] for q in a} & {q["id"] for q in b}
    assert all(q["status"] == "leased" and q["image_width"] == 8 for q in a)
    assert world.claim("bob") == []


def test_expired_lease_returns_to_queue(world):
    world.ask([(0, 0)])
    (q,) = world.claim("alice", lease=5)
    assert world.claim("bob") == []
    world.env.clock.advance(6)
    (again,) = world.claim("bob", lease=60)
    assert again["id"] == q["id"]
    r = world.answer(q["id"], "alice")
    assert r.status_code == 409 and r.json()["error"]["code"] == "not_leased"
    assert world.answer(q["id"], "bob").status_code == 200


def test_own_expired_lease_is_410(world):
    world.ask([(0, 0)])
    (q,) = world.claim("alice", lease=5)
    world.env.clock.advance(6)
    r = world.answer(q["id"], "alice")
    assert r.status_code == 410 and r.json()["error"]["code"] == "lease_expired"


def test_skip_releases_reservation(world):
    world.ask([(0, 0), (0, 1)])
    q, _ = world.claim("alice")
    r = world.post(f"/api/v1/queries/{q['id']}/skip", "alice")
    assert r.status_code == 200 and r.json()["status"] == "skipped"
    b = world.budget()
    assert (b["reserved"], b["skipped"], b["remaining"]) == (1, 1, 19)
    assert world.post(f"/api/v1/queries/{q['id']}/skip", "alice").status_code == 409
    assert world.claim("bob") == []  # the skipped query never comes back


def test_cant_tell_is_a_skip_with_its_reason_counted_apart(world):
    """An annotator who cannot tell the class says so: the query is skipped with the reason
    ``cant_tell``, which the budget and the stats count apart; a plain skip has no reason."""
    world.ask([(0, 0), (0, 1), (0, 2)])
    q1, q2, q3 = world.claim("alice")
    assert q1["image_key"] == "tgt/000001" and q1["skip_reason"] is None  # the name to show
    r = world.post(f"/api/v1/queries/{q1['id']}/skip", "alice", {"reason": "cant_tell"})
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["skip_reason"]) == ("skipped", "cant_tell")
    r = world.post(f"/api/v1/queries/{q2['id']}/skip", "alice")  # no body: a plain skip
    assert r.status_code == 200 and r.json()["skip_reason"] is None
    r = world.post(f"/api/v1/queries/{q3['id']}/skip", "alice", {"reason": "bored"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "validation_error"
    b = world.budget()
    assert (b["reserved"], b["skipped"], b["cant_tell"]) == (1, 2, 1)  # q3 still leased
    s = world.get(f"/api/v1/runs/{world.run_id}/stats", "viewer").json()
    assert (s["leased"], s["skipped"], s["cant_tell"]) == (1, 2, 1)
    listed = world.get(f"/api/v1/runs/{world.run_id}/queries", "trainer").json()["queries"]
    assert [(q["status"], q["skip_reason"]) for q in listed] == [
        ("skipped", "cant_tell"),
        ("skipped", None),
        ("leased", None),
    ]


def test_claim_bounds(world):
    url = f"/api/v1/runs/{world.run_id}/claims"
    for body in ({"n": 0}, {"n": 501}, {"n": 1, "lease_seconds": 1}):
        r = world.post(url, "alice", body)
        assert r.status_code == 422 and r.json()["error"]["code"] == "validation_error"


def test_list_queries_pages_every_asked_pixel_in_any_status(world):
    ids = world.ask([(0, x) for x in range(5)]).json()["ids"]
    claimed = world.claim("alice", n=1)
    assert world.post(f"/api/v1/queries/{claimed[0]['id']}/skip", "alice", {}).status_code == 200
    path = f"/api/v1/runs/{world.run_id}/queries"
    first = world.get(path, "trainer", params={"limit": 3}).json()
    assert [q["id"] for q in first["queries"]] == ids[:3]
    rest = world.get(path, "trainer", params={"after": first["cursor"]}).json()
    assert [q["id"] for q in rest["queries"]] == ids[3:]
    statuses = [q["status"] for q in first["queries"] + rest["queries"]]
    assert statuses.count("skipped") == 1 and statuses.count("pending") == 4
    assert world.get(path, "alice").status_code == 403
    assert world.get("/api/v1/runs/999/queries", "trainer").status_code == 404
