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


class AnswerHold:
    """The page's answers, intercepted from its first load (a route added in the middle of the
    page's life has been seen to miss the very next request: CI, stop 17) and, while ``on``,
    held: before the server has them, or with ``commit`` after it has answered them."""

    def __init__(self, page, commit: bool = False) -> None:
        self.page, self.commit, self.on, self.held = page, commit, False, []
        page.route("**/api/v1/queries/*/answer", self._route)

    def _route(self, route) -> None:
        if self.on:
            self.held.append((route, route.fetch() if self.commit else None))
        else:
            route.continue_()

    def wait_one(self) -> None:
        deadline = time.monotonic() + 5
        while not self.held and time.monotonic() < deadline:
            self.page.wait_for_timeout(50)  # lets the route handler run
        assert len(self.held) == 1, "the answer was not held at the route"

    def release(self) -> None:
        self.on = False
        for route, response in self.held:
            route.continue_() if response is None else route.fulfill(response=response)


def test_counters_survive_a_reload_and_a_closing_page_releases_its_leases(
    service, make_run, page_at
):
    run = make_run("session-page", n_images=2, n_queries=12)
    page = page_at(1280, 720)
    hold = AnswerHold(page)
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
    hold.on = True
    page.keyboard.press("3")
    wait_shown(page, q4)
    wait_text(page, "budget-answered", "3")
    wait_text(page, "my-count", "3")
    hold.wait_one()
    assert budget(service, run.id)["answered"] == 2  # the server has not got it yet
    hold.release()
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


def test_a_budget_read_while_a_save_is_on_its_way_back_counts_it_once(service, make_run, page_at):
    """The server has the answer, the page has not heard back: a budget read then holds the
    answer once (in the server's number), not twice (the server's and the page's own)."""
    make_run("session-page-once", n_images=2, n_queries=8)
    page = page_at(1280, 720)
    hold = AnswerHold(page, commit=True)  # the server commits it; the page hears nothing yet
    finished = []
    page.on("requestfinished", lambda r: finished.append(r.url) if "/budget" in r.url else None)
    page.goto(f"{service.base}/?token={service.tokens['bob']}")
    q1 = wait_shown(page)
    page.keyboard.press("1")
    q2 = wait_shown(page, q1)
    wait_text(page, "unsaved", "all saved")
    wait_text(page, "budget-answered", "1")

    hold.on = True
    page.keyboard.press("2")
    wait_shown(page, q2)
    hold.wait_one()
    reads = len(finished)
    deadline = time.monotonic() + 12  # the page reads the budget every 5 s
    while len(finished) == reads and time.monotonic() < deadline:
        page.wait_for_timeout(100)
    assert len(finished) > reads, "no budget read while the answer's response was held"
    page.wait_for_timeout(200)  # the read is shown
    answered = page.text_content('[data-testid="budget-answered"]').strip()
    assert answered == "2"  # the old page showed 3: the server's 2 plus its own unseen 1
    hold.release()
    wait_text(page, "unsaved", "all saved")
    wait_text(page, "budget-answered", "2")
    assert page.js_errors == []
