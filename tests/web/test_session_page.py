"""The annotator page in a labeling session (issue 11): its counters survive a reload, the
budget box follows its own answers before the server has them, and a closing page releases
the leases it prefetched."""

from __future__ import annotations

import time

import pytest
from test_annotate import budget, wait_shown, wait_text

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def queue_state(service, run_id: int) -> tuple[int, int]:
    with service.client("viewer") as viewer:
        pace = viewer.get(f"/api/v1/runs/{run_id}/pace").json()
    return pace["pending"], pace["leased"]


def test_counters_survive_a_reload_and_a_closing_page_releases_its_leases(
    service, make_run, page_at
):
    run = make_run("session-page", n_images=2, n_queries=12)
    page = page_at(1280, 720)
    page.goto(f"{service.base}/?token={service.tokens['bob']}")
    q1 = wait_shown(page)
    page.keyboard.press("1")
    q2 = wait_shown(page, q1)
    page.keyboard.press("2")
    q3 = wait_shown(page, q2)
    page.keyboard.press(" ")  # skip
    q4 = wait_shown(page, q3)
    wait_text(page, "unsaved", "all saved")
    wait_text(page, "my-count", "2")
    wait_text(page, "my-skipped", "1")
    wait_text(page, "budget-answered", "2")

    # The budget box and the counter move with the key press, before the server answers.
    held = []
    page.route("**/api/v1/queries/*/answer", lambda route: held.append(route))
    page.keyboard.press("3")
    wait_shown(page, q4)
    wait_text(page, "budget-answered", "3")
    wait_text(page, "my-count", "3")
    assert budget(service, run.id)["answered"] == 2  # the server has not got it yet
    for route in held:
        route.continue_()
    page.unroute("**/api/v1/queries/*/answer")
    wait_text(page, "unsaved", "all saved")
    assert budget(service, run.id)["answered"] == 3

    # A reload keeps the counts (the server's, per token) and gives the old leases back.
    page.reload()
    wait_shown(page)
    wait_text(page, "my-count", "3")
    wait_text(page, "my-skipped", "1")
    wait_text(page, "budget-answered", "3")

    # Closing the page (leaving it) releases what it holds at once, not after the 300 s lease.
    assert queue_state(service, run.id)[1] > 0
    page.goto("about:blank")
    deadline = time.monotonic() + 5
    while queue_state(service, run.id)[1] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert queue_state(service, run.id) == (12 - 4, 0)
    with service.client("annotator") as alice:
        r = alice.post(f"/api/v1/runs/{run.id}/claims", json={"n": 20})
    assert len(r.json()["queries"]) == 8  # every one of them claimable by another annotator
    assert page.js_errors == []
