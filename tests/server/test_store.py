"""The image store over the API: images by reference, streamed uploads, shared files, crops,
and bad input (keys outside the store, wrong hashes, oversize uploads) on every backend."""

from __future__ import annotations

import hashlib
import io
import os

import numpy as np
import pytest
from PIL import Image as PILImage
from sqlalchemy import create_engine, text

from tests.server.conftest import UPLOAD_LIMIT


def png_bytes(width: int, height: int, seed: int = 0) -> bytes:
    arr = np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)
    buf = io.BytesIO()
    PILImage.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def put(world, dataset: str, path: str, data: bytes) -> str:
    target = world.env.settings.store_root / dataset / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def register(world, *items: dict, run_id: int | None = None):
    url = f"/api/v1/runs/{run_id or world.run_id}/images"
    return world.post(url, "trainer", {"images": list(items)})


def counts(world) -> tuple[int, int]:
    engine = create_engine(world.env.settings.database_url)
    with engine.connect() as conn:
        n = [
            conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one()
            for t in ("images", "blobs")
        ]
    engine.dispose()
    return n[0], n[1]


def new_run(world) -> int:
    body = {"name": "r2", "classes": [{"id": 0, "name": "a"}], "target_pixels": 100}
    body["budget_rate"] = 0.1
    return world.post("/api/v1/runs", "trainer", body).json()["id"]


def test_register_by_reference_is_shared_between_runs(world):
    data = png_bytes(40, 20)
    sha = put(world, "city", "train/a.png", data)
    ref = {"key": "train/a", "dataset": "city", "path": "train/a.png", "sha256": sha}
    r = register(world, ref)
    assert r.status_code == 201, r.text
    assert r.json()["images"][0] | {"id": 0} == {
        "id": 0,
        "key": "train/a",
        "width": 40,
        "height": 20,
    }
    other = new_run(world)
    assert register(world, ref, run_id=other).status_code == 201
    assert counts(world) == (3, 2)  # the world's base64 image, a in two runs; two files
    image_id = r.json()["images"][0]["id"]
    full = world.get(f"/api/v1/images/{image_id}.png", "alice")
    assert full.status_code == 200 and full.content == data
    crop = world.get(f"/api/v1/images/{image_id}.png?cx=39&cy=0&r=2&scale=3", "alice")
    arr = np.asarray(PILImage.open(io.BytesIO(crop.content)))
    src = np.asarray(PILImage.open(io.BytesIO(data)))
    assert arr.shape == (15, 15, 3) and (arr[:6] == 0).all() and (arr[:, 9:] == 0).all()
    np.testing.assert_array_equal(arr[6:9, 6:9], np.broadcast_to(src[0, 39], (3, 3, 3)))


def test_streamed_upload_then_register(world):
    data = png_bytes(16, 8, seed=3)
    h = {**world.h("trainer"), "Content-Type": "image/png"}
    r = world.env.client.post("/api/v1/uploads", content=data, headers=h)
    assert r.status_code == 201, r.text
    up = r.json()
    assert up["sha256"] == hashlib.sha256(data).hexdigest() and up["dataset"] == "uploads"
    assert (up["bytes"], up["width"], up["height"]) == (len(data), 16, 8)
    again = world.env.client.post(
        "/api/v1/uploads", content=iter([data[:50], data[50:]]), headers=h
    )
    assert again.json() == up  # chunked, same content: the same file
    ref = {"key": "k/up", **{k: up[k] for k in ("dataset", "path", "sha256")}}
    out = register(world, ref)
    assert out.status_code == 201 and out.json()["images"][0]["width"] == 16
    assert world.get(f"/api/v1/images/{out.json()['images'][0]['id']}.png", "bob").content == data


def _refused(world, response, status: int, code: str, before: tuple[int, int]) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert counts(world) == before
    incoming = world.env.settings.store_root / "uploads" / ".incoming"
    assert not incoming.exists() or not list(incoming.iterdir())


@pytest.mark.parametrize(
    "path",
    ["../outside.png", "/etc/passwd", "a/../../outside.png", "a//b.png", "c:/x.png", "a\\b.png"],
)
def test_key_outside_the_store_is_refused(world, path):
    put(world, "city", "ok.png", png_bytes(4, 4))
    (world.env.settings.store_root / "outside.png").write_bytes(png_bytes(4, 4))
    before = counts(world)
    r = register(world, {"key": "x", "dataset": "city", "path": path, "sha256": "0" * 64})
    _refused(world, r, 422, "validation_error", before)


def test_link_out_of_the_dataset_is_refused(world, tmp_path):
    secret = tmp_path / "secret.png"
    secret.write_bytes(png_bytes(4, 4))
    link = world.env.settings.store_root / "city" / "evil.png"
    link.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(secret, link)
    sha = hashlib.sha256(secret.read_bytes()).hexdigest()
    before = counts(world)
    r = register(world, {"key": "x", "dataset": "city", "path": "evil.png", "sha256": sha})
    _refused(world, r, 422, "bad_store_key", before)
    r = register(world, {"key": "x", "dataset": "..", "path": "evil.png", "sha256": sha})
    _refused(world, r, 422, "validation_error", before)


def test_wrong_hash_and_missing_file_are_refused(world):
    data = png_bytes(8, 8)
    sha = put(world, "city", "a.png", data)
    before = counts(world)
    good = {"key": "a", "dataset": "city", "path": "a.png", "sha256": sha}
    bad = {**good, "key": "b", "sha256": hashlib.sha256(b"other").hexdigest()}
    _refused(world, register(world, good, bad), 422, "hash_mismatch", before)
    gone = {**good, "key": "c", "path": "gone.png"}
    _refused(world, register(world, gone), 404, "image_not_found", before)
    _refused(world, register(world, {**good, "width": 9}), 422, "invalid_image", before)
    assert register(world, good).status_code == 201
    after = counts(world)
    changed = register(world, {**good, "key": "a3", "sha256": bad["sha256"]})
    _refused(world, changed, 422, "hash_mismatch", after)  # not the hash recorded for a.png
    put(world, "city", "notpng.png", b"GIF89a not a png")
    notpng = {**good, "key": "d", "path": "notpng.png", "sha256": "0" * 64}
    _refused(world, register(world, notpng), 422, "invalid_image", after)


def test_bad_uploads_store_nothing(world):
    before = counts(world)
    stored = list((world.env.settings.store_root / "uploads").glob("*/*.png"))
    h = {**world.h("trainer"), "Content-Type": "image/png"}
    post = world.env.client.post
    big = b"\x89PNG\r\n\x1a\n" + bytes(UPLOAD_LIMIT)
    _refused(
        world, post("/api/v1/uploads", content=big, headers=h), 413, "payload_too_large", before
    )
    chunked = post("/api/v1/uploads", content=iter([big[:1000], big[1000:]]), headers=h)
    _refused(world, chunked, 413, "payload_too_large", before)
    _refused(
        world, post("/api/v1/uploads", content=b"GIF89a", headers=h), 422, "invalid_image", before
    )
    js = {**world.h("trainer"), "Content-Type": "application/json"}
    _refused(
        world,
        post("/api/v1/uploads", content=b"{}", headers=js),
        415,
        "unsupported_media_type",
        before,
    )
    annot = {**world.h("alice"), "Content-Type": "image/png"}
    _refused(
        world,
        post("/api/v1/uploads", content=png_bytes(4, 4), headers=annot),
        403,
        "forbidden",
        before,
    )
    assert list((world.env.settings.store_root / "uploads").glob("*/*.png")) == stored
