"""Answers: single, batch all-or-nothing, cursor reads, undo and corrections."""

from __future__ import annotations


def _since(world, after: int = 0, who: str = "trainer"):
    r = world.get(f"/api/v1/runs/{world.run_id}/answers?after={after}", who)
    assert r.status_code == 200, r.text
    return r.json()


def test_answer_moves_budget_and_is_listed(world):
    world.ask([(0, 0), (1, 2)], group="medium")
    q1, q2 = world.claim()
    r = world.answer(q1["id"], class_id=3)
    assert r.status_code == 200
    body = r.json()
    assert (body["query_id"], body["class_id"], body["annotator"], body["y"]) == (
        q1["id"],
        3,
        "alice",
        0,
    )
    b = world.budget()
    assert (b["reserved"], b["answered"], b["remaining"]) == (1, 1, 18)
    assert b["groups"]["medium"] == {
        "reserved": 1,
        "answered": 1,
        "answered_seconds": 0.5,
        "skipped_seconds": 0.0,
        "spent_seconds": 0.5,
    }
    again = world.answer(q1["id"])
    assert again.status_code == 409 and again.json()["error"]["code"] == "already_answered"
    assert world.answer(q2["id"], "bob").json()["error"]["code"] == "not_leased"


def test_unknown_class_422_and_nothing_stored(world):
    world.ask([(0, 0)])
    (q,) = world.claim()
    r = world.answer(q["id"], class_id=2)
    assert r.status_code == 422 and r.json()["error"]["code"] == "unknown_class"
    assert world.budget()["answered"] == 0
    assert world.answer(q["id"], class_id=0).status_code == 200


def test_unknown_query_404(world):
    r = world.answer(12345)
    assert r.status_code == 404 and r.json()["error"]["code"] == "query_not_found"


def test_batch_answers_all_or_nothing(world):
    world.ask([(0, x) for x in range(4)])
    qs = world.claim("alice", n=3)
    (other,) = world.claim("bob", n=1)
    url = f"/api/v1/runs/{world.run_id}/answers"
    bad = [{"query_id": q["id"], "class_id": 1} for q in qs] + [
        {"query_id": other["id"], "class_id": 1}
    ]
    r = world.post(url, "alice", {"answers": bad})
    assert r.status_code == 409 and r.json()["error"]["code"] == "not_leased"
    r = world.post(url, "alice", {"answers": [{"query_id": qs[0]["id"], "class_id": 9}]})
    assert r.status_code == 422
    assert world.budget()["answered"] == 0 and _since(world, who="viewer")["answers"] == []
    good = [{"query_id": q["id"], "class_id": i % 2, "lead_time_ms": 100} for i, q in enumerate(qs)]
    r = world.post(url, "alice", {"answers": good})
    assert r.status_code == 200
    assert [a["query_id"] for a in r.json()["answers"]] == [q["id"] for q in qs]
    b = world.budget()
    assert (b["reserved"], b["answered"]) == (1, 3)


def test_answers_since_cursor(world):
    world.ask([(0, x) for x in range(5)])
    qs = world.claim(n=5)
    for q in qs[:3]:
        world.answer(q["id"])
    page = _since(world)
    assert [a["query_id"] for a in page["answers"]] == [q["id"] for q in qs[:3]]
    assert page["cursor"] == page["answers"][-1]["id"]
    for q in qs[3:]:
        world.answer(q["id"])
    nxt = _since(world, page["cursor"])
    assert [a["query_id"] for a in nxt["answers"]] == [q["id"] for q in qs[3:]]
    assert _since(world, nxt["cursor"]) == {"answers": [], "cursor": nxt["cursor"]}


def test_undo_before_trainer_read_reopens(world):
    world.ask([(0, 0)])
    (q,) = world.claim()
    world.answer(q["id"], class_id=1)
    _since(world, who="viewer")  # a viewer read does not consume
    r = world.post(f"/api/v1/queries/{q['id']}/undo", "alice")
    assert r.status_code == 200 and r.json()["reopened"] is True
    assert r.json()["query"]["status"] == "leased"
    b = world.budget()
    assert (b["reserved"], b["answered"]) == (1, 0)
    assert _since(world)["answers"] == []
    assert world.answer(q["id"], class_id=3).status_code == 200
    (a,) = _since(world)["answers"]
    assert a["class_id"] == 3


def test_undo_after_trainer_read_asks_for_correction(world):
    world.ask([(0, 0)])
    (q,) = world.claim()
    world.answer(q["id"], class_id=1)
    cursor = _since(world)["cursor"]
    r = world.post(f"/api/v1/queries/{q['id']}/undo", "alice")
    assert r.status_code == 200 and r.json()["reopened"] is False
    assert r.json()["query"]["status"] == "answered"
    r = world.answer(q["id"], class_id=0, correction=True)
    assert r.status_code == 200 and r.json()["correction"] is True
    (fix,) = _since(world, cursor)["answers"]
    assert (fix["class_id"], fix["correction"], fix["query_id"]) == (0, True, q["id"])
    assert world.budget()["answered"] == 1  # a correction is not paid twice


def test_undo_of_someone_elses_answer_refused(world):
    world.ask([(0, 0)])
    (q,) = world.claim()
    world.answer(q["id"])
    r = world.post(f"/api/v1/queries/{q['id']}/undo", "bob")
    assert r.status_code == 409 and r.json()["error"]["code"] == "nothing_to_undo"


def test_correction_needs_an_answered_query(world):
    world.ask([(0, 0)])
    (q,) = world.claim()
    r = world.answer(q["id"], class_id=0, correction=True)
    assert r.status_code == 409


def test_only_the_author_or_an_admin_corrects_an_answer(world):
    """Issue 22, item 4: bob, who never held the query, posted corrections to alice's answer
    (200, 200), took over the export's label and left alice's undo with nothing to undo."""
    world.ask([(0, 0)])
    (q,) = world.claim("alice")
    assert world.answer(q["id"], "alice", class_id=1).status_code == 200
    for _ in range(2):
        r = world.answer(q["id"], "bob", class_id=0, correction=True)
        assert r.status_code == 403 and r.json()["error"]["code"] == "not_your_answer", r.text
    url = f"/api/v1/runs/{world.run_id}/export"
    rows = world.get(url, "viewer").json()["answers"]
    assert [(r["annotator"], r["class_id"], r["kept"]) for r in rows] == [("alice", 1, True)]
    assert world.answer(q["id"], "alice", class_id=3, correction=True).status_code == 200
    assert world.answer(q["id"], "admin", class_id=0, correction=True).status_code == 200
    rows = world.get(url, "viewer").json()["answers"]
    assert [(r["annotator"], r["class_id"], r["kept"]) for r in rows] == [
        ("alice", 1, False),
        ("alice", 3, False),
        ("bootstrap-admin", 0, True),  # the export says whose label the mask keeps
    ]
    csv_rows = world.get(url + "?format=csv", "viewer").text.splitlines()
    assert csv_rows[0].endswith(",kept") and csv_rows[-1].endswith(",True")
    r = world.post(f"/api/v1/queries/{q['id']}/undo", "alice")  # the admin's is the latest
    assert r.status_code == 409 and r.json()["error"]["code"] == "nothing_to_undo"
