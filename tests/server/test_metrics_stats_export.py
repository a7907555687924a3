"""Metrics, live stats and exports (listing and label masks)."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
from PIL import Image as PILImage


def test_metrics_ordered_by_iteration(world):
    url = f"/api/v1/runs/{world.run_id}/metrics"
    for it in (200, 100):
        body = {
            "iteration": it,
            "labeled_pixels": it * 2,
            "miou": it / 10,
            "per_class_iou": [0.5, None],
            "split": "target-val",
        }
        r = world.post(url, "trainer", body)
        assert r.status_code == 201 and r.json()["id"] > 0
    assert world.post(url, "alice", {"iteration": 1, "miou": 1.0}).status_code == 403
    got = world.get(url, "viewer").json()["metrics"]
    assert [m["iteration"] for m in got] == [100, 200]
    assert got[0]["per_class_iou"] == [0.5, None]


def test_stats(world):
    world.ask([(0, x) for x in range(4)])
    qs = world.claim(n=3)
    world.answer(qs[0]["id"])
    world.post(f"/api/v1/queries/{qs[1]['id']}/skip", "alice")
    s = world.get(f"/api/v1/runs/{world.run_id}/stats", "viewer").json()
    assert s == {
        "pending": 1,
        "leased": 1,
        "expired": 0,
        "answered": 1,
        "skipped": 1,
        "cant_tell": 0,
        "withdrawn": 0,
        "annotators_active": 1,
        "answers_last_minute": 1,
    }
    world.env.clock.advance(120)
    s = world.get(f"/api/v1/runs/{world.run_id}/stats", "viewer").json()
    assert (s["annotators_active"], s["answers_last_minute"]) == (1, 0)


def test_an_expired_lease_counts_as_expired_at_once(world):
    """A crashed browser's leases counted as leased until someone claimed them again."""
    world.ask([(0, x) for x in range(3)])
    world.claim(n=2, lease=30)
    stats, pace = (f"/api/v1/runs/{world.run_id}/{what}" for what in ("stats", "pace"))
    s = world.get(stats, "viewer").json()
    assert (s["pending"], s["leased"], s["expired"]) == (1, 2, 0)
    world.env.clock.advance(31)
    s = world.get(stats, "viewer").json()
    assert (s["pending"], s["leased"], s["expired"]) == (1, 0, 2)
    p = world.get(pace, "viewer").json()
    assert (p["pending"], p["leased"]) == (3, 0)  # claimable again: waiting work
    world.claim(who="bob", n=3)  # the next claim takes them: leased again, none expired
    s = world.get(stats, "viewer").json()
    assert (s["pending"], s["leased"], s["expired"]) == (0, 3, 0)


def test_the_budget_tells_skips_by_annotators_from_what_finishing_released(world):
    world.ask([(0, x) for x in range(5)])
    qs = world.claim(n=3)
    world.answer(qs[0]["id"])
    world.post(f"/api/v1/queries/{qs[1]['id']}/skip", "alice")
    r = world.env.client.patch(
        f"/api/v1/runs/{world.run_id}", json={"status": "finished"}, headers=world.h("trainer")
    )
    assert r.status_code == 200
    b = world.budget()
    assert (b["answered"], b["skipped"], b["released"], b["reserved"]) == (1, 1, 3, 0)


def _answer_pixels(world):
    world.ask([(0, 0), (3, 7), (1, 1)])
    q00, q37, _ = world.claim(n=3)
    world.answer(q00["id"], class_id=1)
    world.answer(q37["id"], class_id=3)
    world.get(f"/api/v1/runs/{world.run_id}/answers", "trainer")
    world.answer(q37["id"], class_id=0, correction=True)


def test_export_listing_json_and_csv(world):
    _answer_pixels(world)
    url = f"/api/v1/runs/{world.run_id}/export"
    rows = world.get(url, "viewer").json()["answers"]
    assert [(r["y"], r["x"], r["class_id"], r["correction"]) for r in rows] == [
        (0, 0, 1, False),
        (3, 7, 3, False),
        (3, 7, 0, True),
    ]
    assert rows[0]["annotator"] == "alice" and rows[0]["lead_time_ms"] == 500
    csv = world.get(url + "?format=csv", "viewer")
    assert csv.headers["content-type"].startswith("text/csv")
    assert csv.text.splitlines()[0].startswith("answer_id,query_id")
    assert len(csv.text.splitlines()) == 4
    assert world.get(url + "?format=xml", "viewer").status_code == 422


def test_export_masks_zip(world):
    _answer_pixels(world)
    r = world.get(f"/api/v1/runs/{world.run_id}/export/masks.zip", "viewer")
    assert r.status_code == 200
    zf = zipfile.ZipFile(io.BytesIO(r.content))
    assert sorted(zf.namelist()) == ["classes.json", "tgt/labels/000001.png"]
    mask = np.asarray(PILImage.open(io.BytesIO(zf.read("tgt/labels/000001.png"))))
    assert mask.dtype == np.uint8 and mask.shape == (4, 8)
    expected = np.full((4, 8), 255, np.uint8)
    expected[0, 0], expected[3, 7] = 1, 0  # the correction wins; (1, 1) is unanswered
    np.testing.assert_array_equal(mask, expected)
    assert [c["id"] for c in json.loads(zf.read("classes.json"))["classes"]] == [0, 1, 3]
