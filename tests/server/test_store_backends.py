"""The S3 backend (against moto's in-process S3) end to end, and the crop cache's bound."""

from __future__ import annotations

import hashlib
import io
import shutil
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image as PILImage

from server.main import create_app
from server.settings import Settings
from server.store.cache import DecodedCache
from tests.server.conftest import ADMIN, Clock, Env, make_world

moto = pytest.importorskip("moto")
boto3 = pytest.importorskip("boto3")


def png(width: int, height: int) -> bytes:
    arr = np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8)
    buf = io.BytesIO()
    PILImage.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def s3_world(tmp_path: Path, sqlite_template: Path, monkeypatch: pytest.MonkeyPatch):
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(var, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with moto.mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="imgs")
        shutil.copy(sqlite_template, tmp_path / "a.db")
        cfg = Settings(
            database_url=f"sqlite:///{tmp_path / 'a.db'}",
            admin_token=ADMIN,
            environment="test",
            web_dir=None,
            store_backend="s3",
            s3_bucket="imgs",
            s3_prefix="adamcu/",
        )
        with TestClient(create_app(cfg, clock=Clock())) as client:
            yield make_world(Env(cfg, client, Clock(), "sqlite")), s3


def test_s3_reference_upload_and_crop(s3_world):
    world, s3 = s3_world
    data = png(30, 10)
    sha = hashlib.sha256(data).hexdigest()
    s3.put_object(Bucket="imgs", Key="adamcu/city/t/a.png", Body=data)
    url = f"/api/v1/runs/{world.run_id}/images"
    ref = {"key": "t/a", "dataset": "city", "path": "t/a.png", "sha256": sha}
    r = world.post(url, "trainer", {"images": [ref]})
    assert r.status_code == 201, r.text
    image_id = r.json()["images"][0]["id"]
    assert world.get(f"/api/v1/images/{image_id}.png", "alice").content == data
    crop = world.get(f"/api/v1/images/{image_id}.png?cx=0&cy=0&r=1", "alice")
    assert np.asarray(PILImage.open(io.BytesIO(crop.content))).shape == (3, 3, 3)
    bad = {**ref, "key": "t/b", "path": "t/missing.png"}
    assert world.post(url, "trainer", {"images": [bad]}).json()["error"]["code"] == (
        "image_not_found"
    )
    h = {**world.h("trainer"), "Content-Type": "image/png"}
    up = world.env.client.post("/api/v1/uploads", content=png(5, 5), headers=h).json()
    stored = s3.get_object(Bucket="imgs", Key=f"adamcu/uploads/{up['path']}")["Body"].read()
    assert hashlib.sha256(stored).hexdigest() == up["sha256"]
    # the world's base64 image went to the bucket as well
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="imgs")["Contents"]]
    assert sum(k.startswith("adamcu/uploads/") for k in keys) == 2


def test_decoded_cache_stays_within_its_bound():
    cache = DecodedCache(max_bytes=3 * 100 * 100 * 3)
    decoded = []

    def loader(i: int):
        def load() -> PILImage.Image:
            decoded.append(i)
            return PILImage.new("RGB", (100, 100))

        return load

    for i in [1, 2, 3, 1, 4, 5, 1]:
        cache.get(i, loader(i))
        assert cache.size_bytes <= cache.max_bytes
    assert decoded == [1, 2, 3, 4, 5]  # 1 stayed: used again before each eviction
    cache.get(2, loader(2))
    assert decoded[-1] == 2  # 2 was evicted
    huge = DecodedCache(max_bytes=10)
    huge.get(7, loader(7))
    assert huge.size_bytes == 0  # larger than the bound: served, not kept
