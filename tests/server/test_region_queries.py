"""Region queries (issue 24) on the server: stored, listed, charged their pixel count, answered
with one class that labels every pixel (masks.zip), undone and corrected; bad regions refused
with nothing changed; the annotators' seconds beside the pixels."""

from __future__ import annotations

import csv
import io
import json
import zipfile

import numpy as np
import pytest
from PIL import Image as PILImage

from server.schemas import IGNORE_INDEX, Region
from tests.server.conftest import World

# in the world's 8 x 4 image: a 2 x 3 box at (1, 2) whose rows are 111 and 011 (5 pixels)
REGION = {"top": 1, "left": 2, "height": 2, "width": 3, "runs": [0, 3, 1, 2]}
CELLS = [(1, 2), (1, 3), (1, 4), (2, 3), (2, 4)]
PIXELS = 5


def ask_region(world: World, region: dict = REGION, y: int = 1, x: int = 2, **extra):
    query = {"image_id": world.image_id, "y": y, "x": x, "group": "high", "region": region}
    body = {"queries": [{**query, **extra}]}
    return world.post(f"/api/v1/runs/{world.run_id}/queries", "trainer", body)


def listed(world: World) -> list[dict]:
    r = world.get(f"/api/v1/runs/{world.run_id}/queries", "trainer")
    assert r.status_code == 200, r.text
    return r.json()["queries"]


def answers(world: World) -> list[dict]:
    r = world.get(f"/api/v1/runs/{world.run_id}/answers", "viewer")
    assert r.status_code == 200, r.text
    return r.json()["answers"]


def mask(world: World) -> np.ndarray:
    r = world.get(f"/api/v1/runs/{world.run_id}/export/masks.zip", "viewer")
    assert r.status_code == 200, r.text
    zf = zipfile.ZipFile(io.BytesIO(r.content))
    return np.asarray(PILImage.open(io.BytesIO(zf.read("tgt/labels/000001.png"))))


def expected_mask(class_id: int, cells=CELLS) -> np.ndarray:
    want = np.full((4, 8), IGNORE_INDEX, np.uint8)
    for y, x in cells:
        want[y, x] = class_id
    return want


def test_a_region_query_is_stored_listed_claimed_and_charged_its_pixels(world: World) -> None:
    r = ask_region(world)
    assert r.status_code == 201, r.text
    (qid,) = r.json()["ids"]
    assert [q["region"] for q in listed(world)] == [REGION]
    b = world.budget()
    assert (b["reserved"], b["groups"]["high"]["reserved"], b["remaining"]) == (5, 5, 15)
    (claimed,) = world.claim()
    assert claimed["id"] == qid and claimed["region"] == REGION
    a = world.answer(qid, class_id=3)
    assert a.status_code == 200, a.text
    assert a.json()["region"] == REGION
    b = world.budget()
    assert (b["reserved"], b["answered"], b["groups"]["high"]["answered"]) == (0, 5, 5)
    assert [(x["query_id"], x["region"]) for x in answers(world)] == [(qid, REGION)]
    assert Region(**answers(world)[0]["region"]).pixels == PIXELS
    assert (mask(world) == expected_mask(3)).all()


def test_pixel_queries_keep_a_null_region_and_cost_one_pixel(world: World) -> None:
    assert world.ask([(0, 0), (3, 7)]).status_code == 201
    assert [q["region"] for q in listed(world)] == [None, None]
    assert world.budget()["reserved"] == 2
    qid = world.claim()[0]["id"]
    assert world.answer(qid).json()["region"] is None
    assert world.budget()["answered"] == 1


def test_a_batch_of_region_answers_labels_every_region(world: World) -> None:
    other = {"top": 0, "left": 6, "height": 1, "width": 2, "runs": [0, 2]}
    body = {
        "queries": [
            {"image_id": world.image_id, "y": 1, "x": 2, "region": REGION},
            {"image_id": world.image_id, "y": 0, "x": 7, "region": other},
            {"image_id": world.image_id, "y": 3, "x": 0},
        ]
    }
    ids = world.post(f"/api/v1/runs/{world.run_id}/queries", "trainer", body).json()["ids"]
    assert world.budget()["reserved"] == 5 + 2 + 1
    assert len(world.claim()) == 3
    items = [
        {"query_id": q, "class_id": c, "lead_time_ms": 1000}
        for q, c in zip(ids, [0, 1, 3], strict=True)
    ]
    r = world.post(f"/api/v1/runs/{world.run_id}/answers", "alice", {"answers": items})
    assert r.status_code == 200, r.text
    assert [a["region"] for a in r.json()["answers"]] == [REGION, other, None]
    b = world.budget()
    assert (b["reserved"], b["answered"], b["answered_seconds"]) == (0, 8, 3.0)
    want = expected_mask(0)
    want[0, 6:8] = 1
    want[3, 0] = 3
    assert (mask(world) == want).all()


@pytest.mark.parametrize(
    "region",
    [
        {"top": 3, "left": 2, "height": 2, "width": 3, "runs": [0, 3, 1, 2]},  # below
        {"top": 1, "left": 6, "height": 2, "width": 3, "runs": [0, 3, 1, 2]},  # right
    ],
)
def test_a_box_leaving_the_image_is_refused_and_the_batch_changes_nothing(
    world: World, region: dict
) -> None:
    fine = {"image_id": world.image_id, "y": 0, "x": 0}
    bad = {"image_id": world.image_id, "y": region["top"], "x": region["left"], "region": region}
    body = {"queries": [fine, bad]}
    r = world.post(f"/api/v1/runs/{world.run_id}/queries", "trainer", body)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "pixel_out_of_range"
    assert "leaves image" in r.json()["error"]["message"]
    assert listed(world) == []
    assert world.budget()["reserved"] == 0


@pytest.mark.parametrize(
    "region",
    [
        {"top": 1, "left": 2, "height": 2, "width": 3, "runs": [0, 3, 1]},  # 4 of 6 pixels
        {"top": 1, "left": 2, "height": 2, "width": 3, "runs": [0, 3, 1, 3]},  # 7 of 6
        {"top": 1, "left": 2, "height": 2, "width": 3, "runs": [6, 0]},  # no pixel inside
        {"top": 1, "left": 2, "height": 2, "width": 3, "runs": [0, -1, 7]},  # negative run
    ],
)
def test_runs_that_do_not_fit_the_box_are_refused_and_change_nothing(
    world: World, region: dict
) -> None:
    fine = {"image_id": world.image_id, "y": 0, "x": 0}
    bad = {"image_id": world.image_id, "y": 1, "x": 2, "region": region}
    r = world.post(f"/api/v1/runs/{world.run_id}/queries", "trainer", {"queries": [fine, bad]})
    assert r.status_code == 422, r.text
    assert set(r.json()) == {"error"}
    assert listed(world) == [] and world.budget()["reserved"] == 0


def test_a_region_larger_than_the_budget_left_is_refused(world: World) -> None:
    big = {"top": 0, "left": 0, "height": 3, "width": 7, "runs": [0, 21]}  # 21 > 20 pixels
    r = ask_region(world, big, y=0, x=0)
    assert r.status_code == 409 and r.json()["error"]["code"] == "budget_exceeded"
    assert listed(world) == [] and world.budget()["reserved"] == 0


def test_undo_reopens_a_region_query_and_gives_its_pixels_back(world: World) -> None:
    (qid,) = ask_region(world).json()["ids"]
    world.claim()
    assert world.answer(qid, class_id=0).status_code == 200
    r = world.post(f"/api/v1/queries/{qid}/undo", "alice")
    assert r.status_code == 200 and r.json()["reopened"] is True
    assert r.json()["query"]["region"] == REGION
    b = world.budget()
    assert (b["reserved"], b["answered"]) == (5, 0)
    assert (mask(world) == IGNORE_INDEX).all()
    assert world.answer(qid, class_id=1).status_code == 200
    assert world.budget()["answered"] == 5
    assert (mask(world) == expected_mask(1)).all()


def test_a_correction_of_a_read_region_answer_relabels_the_whole_region(world: World) -> None:
    (qid,) = ask_region(world).json()["ids"]
    world.claim()
    assert world.answer(qid, class_id=0).status_code == 200
    assert len(world.get(f"/api/v1/runs/{world.run_id}/answers", "trainer").json()["answers"])
    r = world.post(f"/api/v1/queries/{qid}/undo", "alice")
    assert r.json()["reopened"] is False
    c = world.answer(qid, class_id=3, correction=True)
    assert c.status_code == 200 and c.json()["region"] == REGION
    assert world.budget()["answered"] == 5  # a correction moves no budget
    assert (mask(world) == expected_mask(3)).all()
    assert [a["class_id"] for a in answers(world)] == [0, 3]  # nothing answered is lost


def test_skip_withdraw_and_finish_release_a_region_query_s_pixels(world: World) -> None:
    second = {"top": 0, "left": 6, "height": 1, "width": 2, "runs": [0, 2]}
    third = {"top": 3, "left": 0, "height": 1, "width": 3, "runs": [0, 3]}
    (q1,) = ask_region(world).json()["ids"]
    (q2,) = ask_region(world, second, y=0, x=6).json()["ids"]
    assert world.budget()["reserved"] == 7
    (got,) = world.claim(n=1)
    skipped, withdrawn = (q1, q2) if got["id"] == q1 else (q2, q1)
    size = {q1: 5, q2: 2}
    assert world.post(f"/api/v1/queries/{skipped}/skip", "alice").status_code == 200
    assert world.budget()["reserved"] == size[withdrawn]
    body = {"ids": [withdrawn]}
    r = world.post(f"/api/v1/runs/{world.run_id}/queries/withdraw", "trainer", body)
    assert r.status_code == 200 and r.json()["withdrawn"] == [withdrawn]
    assert world.budget()["reserved"] == 0
    assert ask_region(world, third, y=3, x=0).status_code == 201
    assert world.budget()["reserved"] == 3
    patch = world.env.client.patch(
        f"/api/v1/runs/{world.run_id}", json={"status": "finished"}, headers=world.h("trainer")
    )
    assert patch.status_code == 200, patch.text
    b = world.budget()
    want = (0, 3, size[skipped], size[withdrawn])
    assert (b["reserved"], b["released"], b["skipped"], b["withdrawn"]) == want


def test_answered_seconds_sum_lead_times_per_group_and_count_none_as_zero(world: World) -> None:
    world.ask([(0, 0), (0, 1)], group="high")
    world.ask([(0, 2)], group="random")
    ids = [q["id"] for q in world.claim()]
    assert world.answer(ids[0], lead_time_ms=500).status_code == 200
    assert world.answer(ids[1], lead_time_ms=None).status_code == 200
    assert world.answer(ids[2], lead_time_ms=1250).status_code == 200
    assert world.answer(ids[2], class_id=3, correction=True, lead_time_ms=250).status_code == 200
    b = world.budget()
    assert b["answered_seconds"] == 2.0
    assert b["groups"]["high"]["answered_seconds"] == 0.5
    assert b["groups"]["random"]["answered_seconds"] == 1.5
    assert b["groups"]["medium"]["answered_seconds"] == 0.0


def test_metrics_carry_the_annotator_seconds_spent_by_their_time(world: World) -> None:
    world.ask([(0, 0), (0, 1)])
    ids = [q["id"] for q in world.claim()]
    url = f"/api/v1/runs/{world.run_id}/metrics"
    first = world.post(url, "trainer", {"iteration": 0, "miou": 10.0})
    assert first.status_code == 201 and first.json()["annotator_seconds"] == 0.0
    world.env.clock.advance(1)
    assert world.answer(ids[0], lead_time_ms=1500).status_code == 200
    world.env.clock.advance(1)
    second = world.post(url, "trainer", {"iteration": 1, "miou": 20.0, "labeled_pixels": 1})
    assert second.json()["annotator_seconds"] == 1.5
    world.env.clock.advance(1)
    assert world.answer(ids[1], lead_time_ms=2500).status_code == 200
    world.env.clock.advance(1)
    world.post(url, "trainer", {"iteration": 2, "miou": 30.0, "labeled_pixels": 2})
    got = world.get(url, "viewer").json()["metrics"]
    assert [m["annotator_seconds"] for m in got] == [0.0, 1.5, 4.0]


def _run_body(**extra) -> dict:
    classes = [{"id": 0, "name": "road"}]
    return {"name": "s", "classes": classes, "target_pixels": 100, "budget_rate": 0.1, **extra}


def test_a_run_stores_and_returns_its_budget_in_seconds(world: World) -> None:
    r = world.post("/api/v1/runs", "trainer", _run_body(budget_seconds=900.5))
    assert r.status_code == 201, r.text
    assert r.json()["budget_seconds"] == 900.5
    got = world.get(f"/api/v1/runs/{r.json()['id']}", "viewer").json()
    assert got["budget_seconds"] == 900.5
    plain = world.get(f"/api/v1/runs/{world.run_id}", "viewer").json()
    assert plain["budget_seconds"] is None


@pytest.mark.parametrize("seconds", [0, -5, "1e999", "NaN"])
def test_a_budget_in_seconds_must_be_positive_and_finite(world: World, seconds) -> None:
    before = world.get("/api/v1/runs", "viewer").json()
    raw = (  # raw JSON: 1e999 is parsed as infinity, NaN as a float
        '{"name": "s", "classes": [{"id": 0, "name": "road"}], "target_pixels": 100, '
        f'"budget_rate": 0.1, "budget_seconds": {seconds}}}'
    )
    r = world.env.client.post(
        "/api/v1/runs",
        content=raw,
        headers={**world.h("trainer"), "Content-Type": "application/json"},
    )
    assert r.status_code == 422, r.text
    assert set(r.json()) == {"error"}
    assert world.get("/api/v1/runs", "viewer").json() == before


@pytest.mark.parametrize("n", [1, 2])
def test_a_claim_leases_at_most_n_queries(world: World, n: int) -> None:
    # PostgreSQL ran the locking LIMIT of the lease again per joined row once the queries
    # table grew the region columns, and a claim of 1 leased 2; the CTE runs it once
    world.ask([(0, 0), (0, 1), (0, 2), (0, 3)])
    assert len(world.claim(n=n)) == n
    assert len(world.claim(n=n)) == n
    assert world.budget()["reserved"] == 4


def test_the_answer_export_lists_a_region_answer_with_its_region(world: World) -> None:
    (qid,) = ask_region(world).json()["ids"]
    world.ask([(0, 0)])
    for q in world.claim():
        assert world.answer(q["id"], class_id=1).status_code == 200
    url = f"/api/v1/runs/{world.run_id}/export"
    rows = world.get(url, "viewer").json()["answers"]
    assert {r["query_id"]: r["region"] for r in rows} == {qid: REGION, qid + 1: None}
    text = world.get(url + "?format=csv", "viewer").text
    assert text.splitlines()[0].endswith(",region,kept")
    cells = {int(r["query_id"]): r["region"] for r in csv.DictReader(io.StringIO(text))}
    assert cells == {qid: json.dumps(REGION, separators=(",", ":")), qid + 1: ""}


def test_the_pace_s_eta_counts_the_pixels_a_region_answer_labels(world: World) -> None:
    (region_q,) = ask_region(world).json()["ids"]
    world.ask([(0, 0), (0, 1)])
    claimed = {q["id"] for q in world.claim()}
    assert world.answer(region_q).status_code == 200
    assert world.answer(min(claimed - {region_q})).status_code == 200
    pace = world.get(f"/api/v1/runs/{world.run_id}/pace", "viewer").json()
    # 2 answers in the first minute: 2 a minute, of 3 pixels each on average
    assert (pace["answers_per_minute"], pace["budget_left"]) == (2.0, 14)
    assert pace["eta_minutes"] == round(14 / (2.0 * 3), 2)
