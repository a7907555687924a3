"""The annotator view in headless Chromium against the real app."""

from __future__ import annotations

import pytest
from web_support import post_queries, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SHOWN = "document.getElementById('stage').dataset.queryId"


def shown(page) -> int:
    value = page.evaluate(SHOWN)
    return int(value) if value else 0


def wait_shown(page, not_id: int = 0) -> int:
    """Wait until a query other than `not_id` is on screen (image drawn); return its id."""
    page.wait_for_function(f"(prev) => {SHOWN} && {SHOWN} !== String(prev)", arg=not_id)
    return shown(page)


def wait_text(page, testid: str, text: str) -> None:
    page.wait_for_function(
        '([id, t]) => document.querySelector(`[data-testid="${id}"]`).textContent.trim() === t',
        arg=[testid, text],
    )


def answers_by_query(service, run_id: int) -> dict[int, list[dict]]:
    with service.client("viewer") as viewer:
        r = viewer.get(f"/api/v1/runs/{run_id}/answers", params={"after": 0, "limit": 1000})
    assert r.status_code == 200, r.text
    out: dict[int, list[dict]] = {}
    for a in r.json()["answers"]:
        out.setdefault(a["query_id"], []).append(a)
    return out


def budget(service, run_id: int) -> dict:
    with service.client("viewer") as viewer:
        return viewer.get(f"/api/v1/runs/{run_id}/budget").json()


def test_label_skip_undo_correct(service, make_run, page_at):
    run = make_run("annotate", n_queries=8)
    page = page_at(1280, 720)
    page.goto(f"{service.base}/?token={service.tokens['annotator']}")
    assert "token=" not in page.url  # stripped from the address bar
    q1 = wait_shown(page)
    assert page.is_visible("#target") and page.is_visible("[data-testid=class-18]")
    page.wait_for_timeout(400)  # let the prefetch of the next images finish

    page.click("[data-testid=class-0]")  # mouse: road
    q2 = wait_shown(page, q1)
    page.keyboard.press("2")  # keyboard: sidewalk
    q3 = wait_shown(page, q2)
    # Next query on screen in the same task as the key press: no network wait.
    before, after, ms = page.evaluate("""() => {
        const s = document.getElementById('stage'), b = s.dataset.queryId, t = performance.now();
        document.dispatchEvent(new KeyboardEvent('keydown', {key: 'a', bubbles: true}));
        return [b, s.dataset.queryId, performance.now() - t]; }""")
    assert int(before) == q3 and after and int(after) != q3 and ms < 100
    q4 = int(after)
    page.focus("[data-testid=class-5]")  # Space on a focused class button must still skip
    page.keyboard.press(" ")
    q5 = wait_shown(page, q4)
    page.keyboard.press("3")  # building ...
    q6 = wait_shown(page, q5)
    page.keyboard.press("Backspace")  # ... undone: q5 comes back, reopened
    assert wait_shown(page, q6) == q5
    page.click("[data-testid=class-13]")  # car
    assert wait_shown(page, q5) == q6
    wait_text(page, "unsaved", "all saved")

    got = answers_by_query(service, run.id)
    assert {q: [a["class_id"] for a in rows] for q, rows in got.items()} == {
        q1: [0],
        q2: [1],
        q3: [9],
        q5: [13],
    }
    assert all(
        a["annotator"] == "alice" and not a["correction"] and a["lead_time_ms"] > 0
        for rows in got.values()
        for a in rows
    )
    b = budget(service, run.id)
    assert (b["answered"], b["skipped"], b["reserved"]) == (4, 1, 3)
    assert b["remaining"] == run.budget_total - 7
    # the skip's measured time counts beside the answers' (issue 24)
    assert b["skipped_seconds"] > 0 and b["answered_seconds"] > 0
    assert b["spent_seconds"] == pytest.approx(b["answered_seconds"] + b["skipped_seconds"])
    wait_text(page, "budget-answered", "4")
    wait_text(page, "budget-remaining", str(b["remaining"]))
    wait_text(page, "my-count", "4")
    wait_text(page, "my-skipped", "1")

    # The trainer reads the answers; undo now asks for a correction instead of reopening.
    with service.client("trainer") as trainer:
        trainer.get(f"/api/v1/runs/{run.id}/answers", params={"after": 0})
    page.keyboard.press("Backspace")
    page.wait_for_selector("#correction-banner:not([hidden])")
    assert shown(page) == q5
    page.keyboard.press("4")  # wall, as a correction
    assert wait_shown(page, q5) == q6
    wait_text(page, "unsaved", "all saved")
    rows = answers_by_query(service, run.id)[q5]
    assert [(a["class_id"], a["correction"]) for a in rows] == [(13, False), (3, True)]
    assert budget(service, run.id)["answered"] == 4
    screenshot(page, "annotate-1280x720")
    page.keyboard.press("?")
    assert page.is_visible("#help")
    page.keyboard.press("Escape")
    assert not page.is_visible("#help")

    # Drain the queue: an empty queue is said, and new queries appear by themselves.
    for key in "567":
        prev = shown(page)
        page.keyboard.press(key)
        page.wait_for_function(f"(p) => {SHOWN} !== String(p)", arg=prev)
    page.wait_for_function(
        "() => document.getElementById('stage-empty').textContent.includes('Queue empty')"
    )
    with service.client("trainer") as trainer:
        new = post_queries(trainer, run.id, run.image_ids, 2, offset=40)
    assert wait_shown(page) in new
    assert page.js_errors == []


def test_backspace_undoes_a_skip_and_its_seconds(service, make_run, page_at):
    """Issue 24: a skip costs the person seconds, counted in the budget; Backspace withdraws
    the skip like an answer: the query comes back leased, its seconds and its count gone."""
    run = make_run("undo-skip", n_images=2, n_queries=3)
    page = page_at(1280, 720)
    page.goto(f"{service.base}/?token={service.tokens['annotator']}")
    q1 = wait_shown(page)
    page.wait_for_timeout(200)  # a skip after a moment's look
    page.keyboard.press("0")  # can't tell
    q2 = wait_shown(page, q1)
    wait_text(page, "unsaved", "all saved")
    b = budget(service, run.id)
    assert (b["skipped"], b["cant_tell"], b["reserved"]) == (1, 1, 2)
    assert b["skipped_seconds"] >= 0.2 and b["spent_seconds"] == b["skipped_seconds"]
    wait_text(page, "my-skipped", "1")

    page.keyboard.press("Backspace")
    assert wait_shown(page, q2) == q1  # the skipped query is back, to label
    b = budget(service, run.id)
    assert (b["skipped"], b["cant_tell"], b["reserved"]) == (0, 0, 3)
    assert (b["skipped_seconds"], b["spent_seconds"]) == (0.0, 0.0)
    wait_text(page, "my-skipped", "0")
    page.keyboard.press("2")  # sidewalk
    assert wait_shown(page, q1) == q2
    wait_text(page, "unsaved", "all saved")
    assert [a["class_id"] for a in answers_by_query(service, run.id)[q1]] == [1]
    b = budget(service, run.id)
    assert (b["answered"], b["skipped"], b["skipped_seconds"]) == (1, 0, 0.0)
    assert b["answered_seconds"] > 0
    assert page.js_errors == []


def test_budget_spent(service, make_run, page_at):
    run = make_run("tiny", n_images=1, n_queries=2, target_pixels=200, rate=0.01)
    assert run.budget_total == 2
    page = page_at(1280, 720)
    page.goto(f"{service.base}/?token={service.tokens['bob']}")
    first = wait_shown(page)
    page.keyboard.press("1")
    wait_shown(page, first)
    page.keyboard.press("1")
    page.wait_for_function(
        "() => document.getElementById('stage-empty').textContent.includes('Budget spent')"
    )
    assert budget(service, run.id)["remaining"] == 0


def test_wrong_token_then_sign_in(service, page_at):
    page = page_at(1280, 720)
    page.goto(f"{service.base}/?token=not-a-token")
    page.wait_for_function(
        "() => document.getElementById('signin-message').textContent.includes('not recognised')"
    )
    assert page.is_visible("#token-input") and not page.is_visible("#work")
    page.fill("#token-input", service.tokens["viewer"])
    page.keyboard.press("Enter")
    page.wait_for_function(
        "() => document.getElementById('signin-message').textContent.includes('viewer token')"
    )
    page.fill("#token-input", service.tokens["annotator"])
    page.keyboard.press("Enter")
    page.wait_for_selector("#work", state="visible")


def test_server_down_then_up(service, page_at):
    page = page_at(1280, 720)
    calls = []

    def flaky(route):
        calls.append(route.request.url)
        if len(calls) <= 2:
            route.abort("connectionrefused")
        else:
            route.continue_()

    page.route("**/api/v1/me", flaky)
    page.goto(f"{service.base}/?token={service.tokens['annotator']}")
    page.wait_for_function(
        "() => document.getElementById('signin-message').textContent.includes('cannot be reached')"
    )
    page.wait_for_selector("#work", state="visible", timeout=10000)
    assert len(calls) == 3


def test_answer_retried_after_server_error(service, make_run, page_at):
    run = make_run("flaky", n_images=1, n_queries=3)
    page = page_at(1280, 720)
    failed = []

    def once_503(route):
        if not failed:
            failed.append(route.request.url)
            route.fulfill(
                status=503,
                content_type="application/json",
                body='{"error": {"code": "unavailable", "message": "restarting"}}',
            )
        else:
            route.continue_()

    page.route("**/api/v1/queries/*/answer", once_503)
    page.goto(f"{service.base}/?token={service.tokens['bob']}")
    q = wait_shown(page)
    page.keyboard.press("1")
    wait_shown(page, q)
    page.wait_for_function(
        "() => document.getElementById('notices').textContent.includes('Retrying')"
    )
    wait_text(page, "unsaved", "all saved")
    got = answers_by_query(service, run.id)
    assert [a["class_id"] for a in got[q]] == [0] and len(got) == 1


def test_narrow_screen(service, make_run, page_at):
    make_run("narrow", n_queries=3)
    page = page_at(390, 844)
    page.goto(f"{service.base}/?token={service.tokens['bob']}")
    wait_shown(page)
    image = page.locator("#target").bounding_box()
    palette = page.locator("#palette").bounding_box()
    assert palette["y"] >= image["y"] + image["height"]  # palette wraps below the image
    assert palette["x"] + palette["width"] <= 390
    page.wait_for_timeout(300)
    screenshot(page, "annotate-390x844")


def test_a_run_that_ends_moves_the_annotator_to_the_next_active_run(service, make_run, page_at):
    """Finishing a run releases every lease; the annotator holding one is told the run ended
    (the answer is refused with run_finished) and the view moves to the next active run."""
    nxt = make_run("next-up", n_images=1, n_queries=3)
    ending = make_run("ending", n_images=1, n_queries=3)  # newest: the view starts here
    page = page_at(1280, 720)
    page.goto(f"{service.base}/?token={service.tokens['bob']}")
    q = wait_shown(page)
    assert q in ending.query_ids
    with service.client("trainer") as trainer:
        r = trainer.patch(f"/api/v1/runs/{ending.id}", json={"status": "finished"})
        assert r.status_code == 200, r.text
    page.keyboard.press("1")  # refused: the run has ended
    page.wait_for_function(
        "() => document.getElementById('notices').textContent.includes('has ended')"
    )
    page.wait_for_function(
        "(ids) => ids.includes(Number(document.getElementById('stage').dataset.queryId))",
        arg=nxt.query_ids,
    )
    assert page.evaluate("document.getElementById('run-select').value") == str(nxt.id)
    assert budget(service, ending.id)["reserved"] == 0
    assert not page.js_errors
