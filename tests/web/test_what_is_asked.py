"""A person labels from what the annotator page shows, with no other window and no ground
truth: the image's name, the frame with the pixel marked and a zoom they can change, the
magnified crop beside the class buttons, why the model asks in words, and "can't tell"."""

from __future__ import annotations

import io

import pytest
from PIL import Image
from web_support import screenshot, street_png

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SHOWN = "document.getElementById('stage').dataset.queryId"

# The canvas's drawn view ("x0,y0,w,h" in image pixels), its mark ("cx,cy,half" in canvas
# pixels), its backing width, and the RGB of a canvas pixel, all read from the page.
READ_FRAME = """([dx, dy]) => {
    const c = document.getElementById('target');
    const [cx, cy, half] = c.dataset.mark.split(',').map(Number);
    const px = (x, y) => Array.from(c.getContext('2d').getImageData(x, y, 1, 1).data.slice(0, 3));
    return {view: c.dataset.view.split(',').map(Number), mark: [cx, cy, half],
            width: c.width, edge: px(Math.round(cx + dx * half), Math.round(cy + dy * half))};
}"""


def wait_shown(page, not_id: int = 0) -> int:
    page.wait_for_function(f"(prev) => {SHOWN} && {SHOWN} !== String(prev)", arg=not_id)
    return int(page.evaluate(SHOWN))


def asked(service, run_id: int) -> dict[int, dict]:
    with service.client("viewer") as viewer:
        r = viewer.get(f"/api/v1/runs/{run_id}/queries")
    assert r.status_code == 200, r.text
    return {q["id"]: q for q in r.json()["queries"]}


def stats(service, run_id: int) -> dict:
    with service.client("viewer") as viewer:
        return viewer.get(f"/api/v1/runs/{run_id}/stats").json()


def check_frame(page, q: dict, zoom: int) -> None:
    """The frame shows 1/zoom of each side around the pixel, which a white box marks."""
    got = page.evaluate(READ_FRAME, [1, 0])
    x0, y0, w, h = got["view"]
    assert (w, h) == (q["image_width"] // zoom, q["image_height"] // zoom)
    assert x0 <= q["x"] < x0 + w and y0 <= q["y"] < y0 + h
    k = got["width"] / w  # canvas pixels per image pixel
    cx, cy, half = got["mark"]
    assert (cx, cy) == ((q["x"] - x0 + 0.5) * k, (q["y"] - y0 + 0.5) * k)
    assert got["edge"] == [255, 255, 255]  # the box's right edge, drawn on the frame


def test_a_person_labels_from_the_page_alone(service, make_run, page_at):
    run = make_run("what-is-asked", n_images=2, n_queries=5)
    queries = asked(service, run.id)
    page = page_at(1280, 720)
    page.goto(f"{service.base}/?token={service.tokens['bob']}")
    q = queries[wait_shown(page)]

    # The image's name, as the trainer registered it (not a database id).
    name = page.text_content("[data-testid=image-name]").strip()
    assert name == q["image_key"] and name.startswith("target-train/what-is-asked-")

    # The whole frame with the pixel marked; the zoom is the person's, and stays chosen.
    assert page.is_visible("#target") and page.is_visible("[data-testid=zoom]")
    assert page.text_content("[data-testid=zoom-value]") == "whole frame"
    check_frame(page, q, 1)
    page.keyboard.press("+")
    assert page.text_content("[data-testid=zoom-value]") == "2×"
    check_frame(page, q, 2)
    page.click("[data-testid=zoom-in]")
    assert page.text_content("[data-testid=zoom-value]") == "4×"
    check_frame(page, q, 4)
    page.fill("[data-testid=zoom]", "0")  # the slider, all the way out
    check_frame(page, q, 1)
    page.keyboard.press("+")
    check_frame(page, q, 2)

    # The magnified crop sits right above the class buttons and shows the queried pixel.
    crop = page.locator("[data-testid=inset]").bounding_box()
    buttons = page.locator("#palette").bounding_box()
    assert 0 <= buttons["y"] - (crop["y"] + crop["height"]) <= 24
    left, right = buttons["x"], buttons["x"] + buttons["width"]
    assert left <= crop["x"] and crop["x"] + crop["width"] <= right  # in the buttons' column
    centre = page.evaluate(
        "() => Array.from(document.getElementById('inset').getContext('2d')"
        ".getImageData(90, 90, 1, 1).data.slice(0, 3))"
    )
    seed = 7 + run.image_ids.index(q["image_id"])
    png = Image.open(io.BytesIO(street_png(seed))).convert("RGB")
    assert tuple(centre) == png.getpixel((q["x"], q["y"]))

    # Why the model asks, in words: no bare group name or score.
    words = page.text_content("[data-testid=group-words]").strip()
    expected = {"high": "The model is unsure here", "medium": "The model is fairly unsure here"}
    assert words.startswith(expected[q["group"]])
    assert q["group"] not in words.split() and f"{q['score']:.2f}" not in words
    screenshot(page, "annotate-what-is-asked-1280x720")

    # "Can't tell" (button, then key 0) is a skip with its reason; Space is a plain skip.
    first = q["id"]
    page.click("[data-testid=cant-tell]")
    second = wait_shown(page, first)
    check_frame(page, queries[second], 2)  # the next query keeps the chosen zoom
    page.keyboard.press("0")
    third = wait_shown(page, second)
    page.keyboard.press(" ")
    fourth = wait_shown(page, third)
    page.keyboard.press("1")
    wait_shown(page, fourth)
    page.wait_for_function(
        "() => document.querySelector('[data-testid=unsaved]').textContent === 'all saved'"
    )
    now = asked(service, run.id)
    assert [(now[i]["status"], now[i]["skip_reason"]) for i in (first, second, third, fourth)] == [
        ("skipped", "cant_tell"),
        ("skipped", "cant_tell"),
        ("skipped", None),
        ("answered", None),
    ]
    s = stats(service, run.id)
    assert (s["skipped"], s["cant_tell"], s["answered"]) == (3, 2, 1)
    with service.client("viewer") as viewer:  # each skip sent the time it was on screen
        b = viewer.get(f"/api/v1/runs/{run.id}/budget").json()
    assert b["skipped_seconds"] > 0 and b["spent_seconds"] > b["answered_seconds"]
    assert page.js_errors == []
