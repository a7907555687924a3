"""A region query in the annotator view (issue 24): the region's outline and a fill toggled by
the key /, answered by one key, undone and answered again; the answer reaches the server with
the region, and the budget counts the region's pixels."""

from __future__ import annotations

import numpy as np
import pytest
from test_annotate import SHOWN, answers_by_query, budget, wait_shown, wait_text
from web_support import screenshot

from server.schemas import Region

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def region_of(mask: np.ndarray, top: int, left: int) -> dict:
    """The wire Region of a boolean box mask placed at (top, left)."""
    flat = mask.reshape(-1).astype(int)
    runs, current, length = [], 0, 0
    for v in flat:
        if v == current:
            length += 1
        else:
            runs.append(length)
            current, length = v, 1
    runs.append(length)
    h, w = mask.shape
    return {"top": top, "left": left, "height": h, "width": w, "runs": runs}


def blob(h: int = 10, w: int = 16) -> np.ndarray:
    """An irregular region: an ellipse with a notch, the box's corners outside."""
    yy, xx = np.mgrid[0:h, 0:w]
    inside = ((yy - h / 2 + 0.5) / (h / 2)) ** 2 + ((xx - w / 2 + 0.5) / (w / 2)) ** 2 <= 1
    inside[: h // 2, w // 2 - 1 : w // 2 + 1] = False
    return inside


CANVAS_RGB = """([y, x]) => {
    const c = document.getElementById('target');
    const [x0, y0, w] = c.dataset.view.split(',').map(Number);
    const k = c.width / w;
    const d = c.getContext('2d').getImageData(
        Math.floor((x - x0 + 0.5) * k), Math.floor((y - y0 + 0.5) * k), 1, 1).data;
    return [d[0], d[1], d[2]]; }"""


def test_a_person_labels_a_region_query(service, make_run, page_at):
    run = make_run("regions", n_images=1, n_queries=0, rate=0.05)  # 409 pixels
    region = region_of(blob(), top=20, left=30)
    pixels = Region(**region).pixels
    y, x = 25, 38  # inside the ellipse, below the notch
    assert Region(**region).contains(y, x)
    with service.client("trainer") as trainer:
        query = {"image_id": run.image_ids[0], "y": y, "x": x, "group": "high", "region": region}
        r = trainer.post(f"/api/v1/runs/{run.id}/queries", json={"queries": [query]})
        assert r.status_code == 201, r.text
        (qid,) = r.json()["ids"]
    assert budget(service, run.id)["reserved"] == pixels

    page = page_at(1280, 720)
    page.goto(f"{service.base}/?token={service.tokens['annotator']}")
    assert wait_shown(page) == qid
    target = page.locator("#target")
    edges = int(target.get_attribute("data-region").split(",")[1])
    assert target.get_attribute("data-region") == f"{pixels},{edges}" and edges > 0
    assert target.get_attribute("data-fill") == "on"
    assert f"region of {pixels} px" in page.text_content("#q-pixel")
    assert page.is_visible("[data-testid=fill]")
    filled = page.evaluate(CANVAS_RGB, [y, x])
    screenshot(page, "annotate-region-1280x720")
    page.keyboard.press("/")  # the fill off: the image shows through, the outline stays
    page.wait_for_function("document.getElementById('target').dataset.fill === 'off'")
    plain = page.evaluate(CANVAS_RGB, [y, x])
    assert filled != plain
    assert target.get_attribute("data-region") == f"{pixels},{edges}"
    page.keyboard.press("/")
    page.wait_for_function("document.getElementById('target').dataset.fill === 'on'")
    assert page.evaluate(CANVAS_RGB, [y, x]) == filled

    page.wait_for_timeout(300)  # a lead time a person could have
    page.keyboard.press("2")  # sidewalk
    page.wait_for_function(f"!{SHOWN}")  # nothing else to label
    wait_text(page, "unsaved", "all saved")
    page.keyboard.press("Backspace")  # undo: the region comes back, reopened
    assert wait_shown(page) == qid
    assert page.get_attribute("#target", "data-region") == f"{pixels},{edges}"
    assert budget(service, run.id)["answered"] == 0
    page.click("[data-testid=class-8]")  # vegetation, by mouse
    page.wait_for_function(f"!{SHOWN}")
    wait_text(page, "unsaved", "all saved")

    (answer,) = answers_by_query(service, run.id)[qid]  # the undone answer was removed
    assert answer["class_id"] == 8 and answer["region"] == region
    assert answer["lead_time_ms"] > 0
    b = budget(service, run.id)
    assert (b["answered"], b["reserved"]) == (pixels, 0)
    assert b["answered_seconds"] == answer["lead_time_ms"] / 1000
    assert not page.js_errors
