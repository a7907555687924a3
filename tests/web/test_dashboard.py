"""The dashboard in headless Chromium: chart points, budget and queue numbers, refresh."""

from __future__ import annotations

import math

import pytest
from web_support import screenshot

pytestmark = [pytest.mark.browser, pytest.mark.slow]

POINTS = "document.querySelectorAll('[data-testid=chart-point]').length"


def metric(i: int, n_classes: int = 19) -> dict:
    """A Fig. 1c-like curve: mIoU rises quickly with the first labels, then flattens."""
    pixels = 400 * i
    miou = 38.0 + 20.0 * (1 - math.exp(-pixels / 1200))
    per_class = [
        round(min(95.0, max(0.0, miou + 30 * math.sin(c * 1.7))), 1) for c in range(n_classes)
    ]
    per_class[16] = None  # a class absent from the validation split
    return {
        "iteration": 500 * i,
        "labeled_pixels": pixels,
        "miou": round(miou, 2),
        "per_class_iou": per_class,
        "split": "target-val",
    }


def text(page, testid: str) -> str:
    return page.locator(f"[data-testid={testid}]").inner_text().strip()


def test_dashboard_chart_budget_refresh(service, make_run, page_at):
    run = make_run("dashboard", n_images=4, n_queries=12)
    with service.client("annotator") as alice:
        claimed = alice.post(f"/api/v1/runs/{run.id}/claims", json={"n": 6}).json()["queries"]
        assert len(claimed) == 6
        for i, q in enumerate(claimed[:5]):
            r = alice.post(
                f"/api/v1/queries/{q['id']}/answer",
                json={"class_id": i * 2, "lead_time_ms": 900 + 50 * i},
            )
            assert r.status_code == 200, r.text
        assert alice.post(f"/api/v1/queries/{claimed[5]['id']}/skip").status_code == 200
    with service.client("trainer") as trainer:
        for i in range(8):
            assert trainer.post(f"/api/v1/runs/{run.id}/metrics", json=metric(i)).status_code == 201
    with service.client("viewer") as viewer:
        budget = viewer.get(f"/api/v1/runs/{run.id}/budget").json()
        stats = viewer.get(f"/api/v1/runs/{run.id}/stats").json()
        pace = viewer.get(f"/api/v1/runs/{run.id}/pace").json()
    assert (budget["answered"], budget["skipped"], budget["reserved"]) == (5, 1, 6)

    page = page_at(1280, 720)
    page.goto(f"{service.base}/dashboard.html?token={service.tokens['viewer']}#run={run.id}")
    page.wait_for_function(f"() => {POINTS} === 8")
    assert "token=" not in page.url
    assert page.locator(f"[data-testid=run-{run.id}]").get_attribute("aria-current") == "page"
    assert text(page, "budget-answered") == str(budget["answered"])
    assert text(page, "budget-reserved") == str(budget["reserved"])
    assert text(page, "budget-remaining") == f"{budget['remaining']:,}"
    assert text(page, "budget-expected") == f"{budget['expected']:,}"
    assert text(page, "stat-pending") == str(stats["pending"]) == "6"
    assert text(page, "stat-annotators") == "1"
    # the pace: 5 answers and a skip within the first minute are 6 a minute (GET /pace)
    assert pace["answers_per_minute"] == 6.0 and pace["queue_minutes"] == 1.0
    assert text(page, "stat-rate") == "6.0"
    assert text(page, "stat-queue-minutes") == "1 min"
    assert text(page, "stat-eta") == f"{round(pace['eta_minutes'])} min"
    row = page.locator("[data-testid=pace-annotators] tbody tr[data-annotator=alice]")
    assert row.locator("td").all_inner_texts() == ["alice", "5", "1", "6.0"]
    groups = page.locator("[data-testid=budget-groups] tbody tr")
    assert sorted(groups.evaluate_all("rows => rows.map(r => r.dataset.group)")) == sorted(
        g for g, v in budget["groups"].items() if v["answered"] or v["reserved"]
    )
    iou_rows = page.locator("[data-testid=iou-table] tbody tr")
    assert iou_rows.count() == 19
    assert "road" in iou_rows.first.inner_text()
    xs = page.locator("[data-testid=chart-point]").evaluate_all(
        "ps => ps.map(p => Number(p.dataset.x))"
    )
    assert xs == [400 * i for i in range(8)]
    # every evaluation against time too, in the order they were posted (x: minutes)
    times = page.locator("[data-testid=time-point]").evaluate_all(
        "ps => ps.map(p => [Number(p.dataset.x), Number(p.dataset.y)])"
    )
    assert len(times) == 8 and times[0][0] == 0.0
    assert [x for x, _ in times] == sorted(x for x, _ in times)
    assert [round(y, 2) for _, y in times] == [metric(i)["miou"] for i in range(8)]
    # and against annotator-hours: the 5 answers' lead times (5.0 s) were all spent by then
    assert budget["answered_seconds"] == 5.0
    assert text(page, "budget-seconds") == "5 s"
    hours = page.locator("[data-testid=hours-point]").evaluate_all(
        "ps => ps.map(p => [Number(p.dataset.x), Number(p.dataset.y)])"
    )
    assert [x for x, _ in hours] == [round(5.0 / 3600, 6)] * 8
    assert sorted(round(y, 2) for _, y in hours) == sorted(metric(i)["miou"] for i in range(8))
    screenshot(page, "dashboard-1280x720")

    # It refreshes itself: a new metric and a new answer show up without a reload.
    with service.client("trainer") as trainer:
        trainer.post(f"/api/v1/runs/{run.id}/metrics", json=metric(8))
    page.wait_for_function(f"() => {POINTS} === 9", timeout=8000)
    assert page.locator("[data-testid=time-point]").count() == 9
    assert page.js_errors == []
