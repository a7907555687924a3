"""Image registration (idempotent by key), listing and crops."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image as PILImage

from tests.server.conftest import png_b64


def test_register_is_idempotent(world):
    url = f"/api/v1/runs/{world.run_id}/images"
    body = {
        "images": [
            {"key": "tgt/000001", "width": 8, "height": 4, "png_base64": png_b64(8, 4)},
            {"key": "tgt/000002", "width": 3, "height": 2, "png_base64": png_b64(3, 2)},
        ]
    }
    r = world.post(url, "trainer", body)
    assert r.status_code == 201
    ids = [i["id"] for i in r.json()["images"]]
    assert ids[0] == world.image_id
    assert [i["key"] for i in world.get(url, "viewer").json()["images"]] == [
        "tgt/000001",
        "tgt/000002",
    ]
    assert [i["id"] for i in world.post(url, "trainer", body).json()["images"]] == ids


def test_bad_png_refused(world):
    url = f"/api/v1/runs/{world.run_id}/images"
    for b64 in ("not base64!", png_b64(4, 4)):
        r = world.post(
            url, "trainer", {"images": [{"key": "x", "width": 8, "height": 4, "png_base64": b64}]}
        )
        assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_image"
    assert len(world.get(url, "viewer").json()["images"]) == 1


def test_png_and_crop(world):
    full = world.get(f"/api/v1/images/{world.image_id}.png", "alice")
    assert full.status_code == 200 and full.headers["content-type"] == "image/png"
    src = np.asarray(PILImage.open(io.BytesIO(full.content)))
    r = world.get(f"/api/v1/images/{world.image_id}.png?cx=0&cy=0&r=1&scale=2", "alice")
    crop = np.asarray(PILImage.open(io.BytesIO(r.content)))
    assert crop.shape == (6, 6, 3)
    assert (crop[:2] == 0).all() and (crop[:, :2] == 0).all()  # zero padding
    np.testing.assert_array_equal(crop[2:4, 2:4], np.broadcast_to(src[0, 0], (2, 2, 3)))
    assert world.get("/api/v1/images/999.png", "alice").status_code == 404
