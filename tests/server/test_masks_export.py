"""masks.zip: entry names are one-to-one with image keys, and the zip is written while it is
sent, one mask at a time (the memory figure: scripts/export_rss_bench.py)."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
from PIL import Image as PILImage
from sqlalchemy import create_engine, text

from server.services import masks
from tests.server.conftest import World, png_b64

# keys whose entries collided or could: a key without a split and the same name in
# target-train; a split called "labels"; a safe key shaped like an unsafe key's entry
KEYS = ["x", "target-train/x", "labels/x", "a/labels/x", "unsafe-keys/image-9", "k"]


def _register(world: World, keys: list[str], width: int = 8, height: int = 4) -> list[int]:
    items = [
        {"key": k, "width": width, "height": height, "png_base64": png_b64(width, height, i)}
        for i, k in enumerate(keys)
    ]
    r = world.post(f"/api/v1/runs/{world.run_id}/images", "trainer", {"images": items})
    assert r.status_code == 201, r.text
    return [im["id"] for im in r.json()["images"]]


def _label(world: World, image_ids: list[int], classes: list[int]) -> None:
    """Pixel (0, 0) of each image gets its class; (1, 1) of the first gets 0, then 3."""
    queries = [{"image_id": i, "y": 0, "x": 0} for i in image_ids]
    queries.append({"image_id": image_ids[0], "y": 1, "x": 1})
    r = world.post(f"/api/v1/runs/{world.run_id}/queries", "trainer", {"queries": queries})
    ids = r.json()["ids"]
    assert len(world.claim(n=len(ids))) == len(ids)
    for qid, class_id in zip(ids, [*classes, 0], strict=True):
        assert world.answer(qid, class_id=class_id).status_code == 200
    assert world.answer(ids[-1], class_id=3, correction=True).status_code == 200


def _zip(world: World) -> zipfile.ZipFile:
    r = world.get(f"/api/v1/runs/{world.run_id}/export/masks.zip", "viewer")
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    zf = zipfile.ZipFile(io.BytesIO(r.content))
    assert zf.testzip() is None
    return zf


def _mask(zf: zipfile.ZipFile, name: str) -> np.ndarray:
    return np.asarray(PILImage.open(io.BytesIO(zf.read(name))))


def test_every_image_has_its_own_entry(world: World) -> None:
    ids = _register(world, KEYS)
    unsafe = _register(world, ["to-be-unsafe"])[0]
    engine = create_engine(world.env.settings.database_url)  # a key stored before keys were
    with engine.begin() as conn:  # checked: written straight into the database
        conn.execute(text("UPDATE images SET key = '../../x' WHERE id = :i"), {"i": unsafe})
    engine.dispose()
    classes = [0, 1, 3, 0, 1, 3, 0]
    _label(world, [*ids, unsafe], classes)
    zf = _zip(world)
    names = zf.namelist()
    expected = {
        "x": "labels/x.png",
        "target-train/x": "target-train/labels/x.png",
        "labels/x": "labels/labels/x.png",
        "a/labels/x": "a/labels/labels/x.png",
        "unsafe-keys/image-9": "unsafe-keys/labels/image-9.png",
        "k": "labels/k.png",
    }
    unsafe_entry = f"unsafe-keys/image-{unsafe}.png"
    assert len(names) == len(set(names)) == len(KEYS) + 3  # + the tgt/ image and classes.json
    assert set(names) == {*expected.values(), unsafe_entry, "tgt/labels/000001.png", "classes.json"}
    for key, class_id in zip([*KEYS, None], classes, strict=True):
        mask = _mask(zf, expected[key] if key else unsafe_entry)
        want = np.full((4, 8), 255, np.uint8)
        want[0, 0] = class_id
        if key == KEYS[0]:
            want[1, 1] = 3  # the correction, the latest answer, wins
        np.testing.assert_array_equal(mask, want, err_msg=str(key))
    np.testing.assert_array_equal(_mask(zf, "tgt/labels/000001.png"), np.full((4, 8), 255))
    assert [c["id"] for c in json.loads(zf.read("classes.json"))["classes"]] == [0, 1, 3]


def test_the_zip_is_made_one_mask_at_a_time(world: World, monkeypatch) -> None:
    ids = _register(world, [f"s/{i}" for i in range(5)], width=33, height=17)
    _label(world, ids, [1, 0, 3, 1, 0])
    made: list[int] = []
    real = masks.mask_png

    def counted(db, run_id, image_id, width, height):  # noqa: ANN001, ANN202
        made.append(image_id)
        return real(db, run_id, image_id, width, height)

    monkeypatch.setattr(masks, "mask_png", counted)
    app = world.env.client.app
    with app.state.sessionmaker() as db:
        plan = masks.plan(db, world.run_id)
    chunks = masks.zip_stream(app.state.sessionmaker, plan)
    first = next(chunks)
    assert made == [world.image_id] and first  # one mask made, its bytes already out
    rest = list(chunks)
    assert made == [world.image_id, *ids] and len(rest) == len(ids) + 1
    zf = zipfile.ZipFile(io.BytesIO(first + b"".join(rest)))
    assert zf.testzip() is None
    for i, class_id in zip(range(5), [1, 0, 3, 1, 0], strict=True):
        mask = _mask(zf, f"s/labels/{i}.png")
        assert mask.shape == (17, 33) and mask[0, 0] == class_id
        assert int((mask != 255).sum()) == (2 if i == 0 else 1)
