"""A labeling session through the browser (issue 11): the real server and the real session
worker as processes, Chromium labeling on the annotator page the queries the worker asks, and
the dashboard's mIoU-vs-labels curve growing by itself while it does.

The person is the test: for each pixel the page shows (read off the page: image name, x, y) it
presses the key of the class the target-train label file has there (Space where the label is
ignore). The session ends by itself (budget answered, target-val on a plateau) and its record
must hold exactly the answers the page gave: in the worker's bank, each query answered once.
Server: SQLite and the embedded queue, as ``adamcu serve`` runs by default."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest
from test_annotate import wait_text

from client.api import ServiceClient
from tests.e2e.procs import (
    Stack,
    assert_session_ended_clean,
    prepare_data,
    start_session_worker,
    wait_until,
)
from trainer.data.folder import load_split

pytestmark = [pytest.mark.browser, pytest.mark.slow]

IGNORE = 255
THINK_S = 0.2  # between two answers: 65 take about 15 s
POINTS = """() => [...document.querySelectorAll('[data-testid=chart-point]')]
    .map((p) => [Number(p.dataset.x), Number(p.dataset.y)])"""
SHOWN = """() => { const t = (id) => document.getElementById(id).textContent.trim();
    return {id: document.getElementById('stage').dataset.queryId, pixel: t('q-pixel'),
            image: t('q-image'), answered: t('b-answered'), expected: t('b-expected')}; }"""


class Truth:
    """The target-train label of a pixel the page shows, by the image's name on the page."""

    def __init__(self, data: Path) -> None:
        split = load_split(data, "target-train")
        self.keys = list(split.ids)
        self.row = {key: i for i, key in enumerate(self.keys)}
        self.labels = split.labels

    def __call__(self, image_key: str, y: int, x: int) -> int:
        return int(self.labels[self.row[image_key], y, x])


def label_until_spent(page, truth: Truth, spent, worker, timeout: float) -> tuple[dict, int]:  # noqa: ANN001
    """Answer what the page shows with its class key (a short pause after each, as a quick
    person would) until no query is left to show and ``spent()`` says the server has the whole
    budget answered. Returns ({query id: class id} of the answers given, skips left out; the
    most the page's budget box ever showed above the answers given)."""
    # the palette is drawn when the page has read the runs from the server, after `goto`
    # returns: read its keys once it is there (a stop's CI read it empty on a loaded machine)
    page.wait_for_selector("[data-testid^=class-]", timeout=60_000)
    keys = dict(
        page.eval_on_selector_all(
            "[data-testid^=class-]",
            "bs => bs.map(b => [Number(b.dataset.classId), b.getAttribute('aria-keyshortcuts')])",
        )
    )
    given: dict[int, int] = {}
    seen: set[int] = set()
    over, deadline, last = 0, time.monotonic() + timeout, time.monotonic()
    while True:
        s = page.evaluate(SHOWN)
        if s["answered"].isdigit():
            over = max(over, int(s["answered"]) - len(given))
        now = time.monotonic()
        assert worker.poll() is None, f"the worker exited with {worker.returncode}"
        assert now < deadline, f"budget not answered in {timeout:.0f} s: {len(given)} given, {s}"
        if not s["id"] or int(s["id"]) in seen:
            if spent():
                return given, over
            assert now - last < 60, f"no new query on the page for 60 s: {s}"
            time.sleep(0.2)
            continue
        qid, last = int(s["id"]), now
        x, y = map(int, re.fullmatch(r"x (\d+), y (\d+)", s["pixel"]).groups())
        cls = truth(s["image"], y, x)
        seen.add(qid)
        if cls == IGNORE:
            page.keyboard.press(" ")
        else:
            assert keys.get(cls), f"class {cls} has no key on the palette: {keys}"
            page.keyboard.press(keys[cls])
            given[qid] = cls
        time.sleep(THINK_S)


def wait_point(board, labels: int, timeout: float) -> None:  # noqa: ANN001
    """Wait until the dashboard draws an mIoU point at ``labels`` labeled pixels."""
    from playwright.sync_api import TimeoutError as PageTimeout

    try:
        board.wait_for_function(
            f"() => ({POINTS})().some(([x]) => x === {labels})",
            timeout=1000 * timeout,
            polling=500,
        )
    except PageTimeout:
        pytest.fail(f"no mIoU point at {labels} labels on the dashboard in {timeout:.0f} s "
                    f"(the answers never all reached the worker's bank?): "
                    f"[labels, mIoU] drawn: {board.evaluate(POINTS)}")  # fmt: skip


def wait_end(stack: Stack, timeout: float) -> None:
    try:
        code = stack.worker.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the session did not end by itself {timeout:.0f} s after the budget was "
                    f"answered; worker log:\n{stack.log('worker')[-2000:]}")  # fmt: skip
    assert code == 0, f"the worker exited with {code}: {stack.log('worker')[-3000:]}"


@pytest.mark.timeout(420)
def test_labeling_in_the_browser_drives_a_live_session(tmp_path: Path, page_at) -> None:
    data, weights = prepare_data(tmp_path / "prep")
    db = f"sqlite:///{tmp_path / 'session.db'}"
    stack = Stack(tmp_path / "out", db, "", data=data, weights=weights)
    try:
        stack.start_server()
        worker = start_session_worker(stack)
        run_id = stack.wait_run(timeout=150)
        viewer_token = stack.token("viewer", "watch")
        viewer = ServiceClient(stack.url, viewer_token)
        wait_until(lambda: viewer.pace(run_id)["pending"] > 0, 120, "the worker's first round")

        board = page_at(1280, 720)
        board.goto(f"{stack.url}/dashboard.html?token={viewer_token}#run={run_id}")
        board.wait_for_selector("[data-testid=chart] > *")  # points, or "No metrics posted yet"
        before = board.evaluate(POINTS)
        assert all(x == 0 for x, _ in before), before  # nobody has labeled yet

        page = page_at(1280, 720)
        page.goto(f"{stack.url}/?token={stack.token('annotator', 'ann')}")
        expected = viewer.budget(run_id)["expected"]
        spent = lambda: viewer.budget(run_id)["answered"] >= expected  # noqa: E731
        truth = Truth(data)
        given, over = label_until_spent(page, truth, spent, worker, timeout=180)
        n = len(given)
        assert n == expected, (n, expected)
        wait_text(page, "unsaved", "all saved")
        wait_text(page, "budget-answered", str(n))  # the box agrees with the server at last
        # The dashboard, never reloaded, draws points with labels, up to all of them.
        wait_point(board, n, 90)
        wait_end(stack, 150)
        after = board.evaluate(POINTS)
        assert len(after) > len(before) and max(x for x, _ in after) == n, (before, after)
        start, full = [y for x, y in after if x == 0], [y for x, y in after if x == n]
        assert start and full[-1] != start[0], after  # the mIoU point moved with the labels

        summary, _, withdrawn = assert_session_ended_clean(stack, run_id, truth.keys)
        assert summary["labeled_pixels"] == n
        with ServiceClient(stack.url, stack.admin) as admin:
            answers = list(admin.iter_answers_since(run_id))
        assert {a["query_id"]: a["class_id"] for a in answers} == given  # the page's, no other
        assert {a["annotator"] for a in answers} == {"ann"}
        print(f"\n{n} answered through the page, {len(withdrawn)} queries withdrawn, "
              f"{len(after)} mIoU points, session {summary['seconds']} s, "
              f"budget box at most {over} above the answers given")  # fmt: skip
        assert page.js_errors == [] and board.js_errors == []
        viewer.close()
    finally:
        stack.close()
