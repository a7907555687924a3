"""Values at the edge of what is allowed: image sides, run colours, CSV cells that a
spreadsheet would run."""

from __future__ import annotations

import csv
import hashlib
import io

import numpy as np
import pytest
from PIL import Image as PILImage
from sqlalchemy import create_engine, text

from server.services.export import csv_cell
from tests.server.conftest import World, png_b64

sqlite_only = pytest.mark.parametrize("env", ["sqlite"], indirect=True)


def _png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    PILImage.fromarray(np.zeros((height, width), np.uint8)).save(out, format="PNG")
    return out.getvalue()


def _upload(world: World, data: bytes):
    return world.env.client.post(
        "/api/v1/uploads", content=data, headers={**world.h("trainer"), "Content-Type": "image/png"}
    )


def test_one_side_limit_for_every_way_in(world: World) -> None:
    wide, ok = _png(16385, 1), _png(16384, 1)
    r = _upload(world, wide)
    assert r.status_code == 413 and r.json()["error"]["code"] == "image_too_large", r.text
    assert _upload(world, ok).status_code == 201
    tall = _png(1, 16385)  # by reference to a file already in the store
    folder = world.env.settings.store_root / "ds"
    folder.mkdir(parents=True)
    (folder / "tall.png").write_bytes(tall)
    ref = {
        "key": "t",
        "dataset": "ds",
        "path": "tall.png",
        "sha256": hashlib.sha256(tall).hexdigest(),
    }
    r = world.post(f"/api/v1/runs/{world.run_id}/images", "trainer", {"images": [ref]})
    assert r.status_code == 413 and r.json()["error"]["code"] == "image_too_large", r.text
    declared = {"key": "b", "width": 16385, "height": 1, "png_base64": png_b64(8, 4)}
    r = world.post(f"/api/v1/runs/{world.run_id}/images", "trainer", {"images": [declared]})
    assert r.status_code == 422
    keys = [
        im["key"]
        for im in world.get(f"/api/v1/runs/{world.run_id}/images", "viewer").json()["images"]
    ]
    assert keys == ["tgt/000001"]


def _run(world: World, color: object):
    classes = [{"id": 0, "name": "a", "color": color}]
    body = {"name": "c", "classes": classes, "target_pixels": 1, "budget_rate": 0.1}
    return world.post("/api/v1/runs", "trainer", body)


@pytest.mark.parametrize(
    "color",
    [[999, -5, 1e9], [256, 0, 0], [0, -1, 0], [1.0, 2, 3], [True, 0, 0], ["1", 2, 3], [1, 2]],
)
def test_a_colour_is_three_ints_of_0_to_255(world: World, color: object) -> None:
    before = world.get("/api/v1/runs", "viewer").json()
    r = _run(world, color)
    assert r.status_code == 422 and r.json()["error"]["code"] == "validation_error", r.text
    assert world.get("/api/v1/runs", "viewer").json() == before


@sqlite_only
def test_colours_in_range_are_kept_and_old_rows_still_listed(world: World) -> None:
    r = _run(world, [255, 0, 7])
    assert r.status_code == 201 and r.json()["classes"][0]["color"] == [255, 0, 7]
    engine = create_engine(world.env.settings.database_url)  # a run stored before the check
    with engine.begin() as conn:
        bad = '[{"id": 0, "name": "a", "color": [999, -5, 1000000000]}]'
        conn.execute(
            text("UPDATE runs SET classes = :c WHERE id = :i"), {"c": bad, "i": world.run_id}
        )
    engine.dispose()
    listed = world.get("/api/v1/runs", "viewer")
    assert listed.status_code == 200
    assert [run["classes"][0]["color"] for run in listed.json()] == [[255, 0, 7], [999, -5, 10**9]]


FORMULAS = [
    " =1+1",
    "\u00a0=HYPERLINK(1)",
    "\u200b+1",
    "\ufeff@SUM(1)",
    "\u3000-1",
    "\uff1d1+1",
    "  \u202e=1",
]


@sqlite_only
def test_csv_cells_are_defused_after_blanks_and_invisible_characters(world: World) -> None:
    for i, formula in enumerate(FORMULAS):  # annotator names, as they reach the csv
        r = world.post("/api/v1/tokens", "admin", {"role": "annotator", "name": formula})
        assert r.status_code == 201, r.text
        world.tokens[formula] = r.json()["token"]
        world.ask([(i % 4, i // 4)])
        (q,) = world.claim(formula, n=1)
        assert world.answer(q["id"], formula).status_code == 200
    out = world.get(f"/api/v1/runs/{world.run_id}/export?format=csv", "viewer").text
    rows = list(csv.DictReader(io.StringIO(out)))
    assert sorted(r["annotator"] for r in rows) == sorted("'" + n for n in FORMULAS)
    # a cell that holds '=' further in stays as it is; numbers stay numbers
    assert [csv_cell(v) for v in ("a = b", "s/ =k", 3, -1)] == ["a = b", "s/ =k", 3, -1]
    assert [csv_cell(v) for v in ("=k", "\t=k", " \t@k")] == ["'=k", "'\t=k", "' \t@k"]
