"""Backends under test: SQLite + embedded queue, PostgreSQL + embedded, PostgreSQL + Redis.

Alembic migrates one PostgreSQL schema and one SQLite template per session; every test then
gets empty tables (TRUNCATE ... RESTART IDENTITY) or a fresh copy of the SQLite file, and a
fresh Redis key prefix on a database number reserved for these tests.
(tests/server/test_migrations.py migrates truly empty databases.)
"""

from __future__ import annotations

import base64
import io
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import redis
from fastapi.testclient import TestClient
from PIL import Image as PILImage
from sqlalchemy import create_engine, text

from server.main import create_app
from server.migrate import upgrade
from server.models import utcnow
from server.settings import Settings

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
REDIS_URL = "redis://127.0.0.1:6379/13"
ADMIN = "test-admin-token"
BACKENDS = ["sqlite", "postgres", "postgres-redis"]
UPLOAD_LIMIT = 1 << 20  # ADAMCU_MAX_UPLOAD_BYTES in the tests' apps
TABLES = ("answers", "queries", "metrics", "images", "blobs", "runs", "tokens")


class Clock:
    """Injectable clock: real time plus an offset the test can advance."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return utcnow() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)


@pytest.fixture(scope="session")
def pg_admin_engine():
    engine = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    yield engine
    engine.dispose()


@pytest.fixture
def pg_url(pg_admin_engine) -> Iterator[str]:
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with pg_admin_engine.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    with pg_admin_engine.connect() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))


@pytest.fixture(scope="session")
def pg_migrated(pg_admin_engine) -> Iterator[str]:
    schema = f"s_{uuid.uuid4().hex[:12]}"
    with pg_admin_engine.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = f"{PG_URL}?options=-csearch_path%3D{schema}"
    upgrade(url)
    yield url
    with pg_admin_engine.connect() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tpl") / "template.db"
    upgrade(f"sqlite:///{path}")
    return path


def _fresh_pg(url: str) -> str:
    tables = ", ".join(t for t in TABLES)
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()
    return url


@pytest.fixture
def redis_client() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    yield client
    client.close()


@dataclass
class Env:
    settings: Settings
    client: TestClient
    clock: Clock
    backend: str

    def headers(self, token: str = ADMIN) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}


def _database_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if backend == "sqlite":
        path = tmp_path / "adamcu.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    return _fresh_pg(request.getfixturevalue("pg_migrated"))


@pytest.fixture(params=BACKENDS)
def env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Env]:
    backend = request.param
    url = _database_url(backend, tmp_path, request)
    settings = Settings(
        database_url=url,
        redis_url=REDIS_URL if backend.endswith("redis") else None,
        redis_prefix=f"test-{uuid.uuid4().hex[:10]}",
        admin_token=ADMIN,
        environment="test",
        max_body_bytes=256 * 1024,
        web_dir=None,
        store_root=tmp_path / "store",
        max_upload_bytes=UPLOAD_LIMIT,
    )
    clock = Clock()
    with TestClient(create_app(settings, clock=clock)) as client:
        yield Env(settings, client, clock, backend)
    if settings.redis_url:
        r = redis.Redis.from_url(REDIS_URL)
        keys = list(r.scan_iter(f"{settings.redis_prefix}:*"))
        if keys:
            r.delete(*keys)
        r.close()


def png_b64(width: int, height: int, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    buf = io.BytesIO()
    PILImage.fromarray(arr).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


CLASSES = [
    {"id": 0, "name": "road", "color": [128, 64, 128]},
    {"id": 1, "name": "sidewalk", "color": [244, 35, 232]},
    {"id": 3, "name": "wall", "color": [102, 102, 156]},
]


@dataclass
class World:
    """A run with one 8x4 image and tokens for each role."""

    env: Env
    run_id: int
    image_id: int
    tokens: dict[str, str]

    def h(self, who: str) -> dict[str, str]:
        return self.env.headers(self.tokens[who])

    def post(self, path: str, who: str, json: object = None, **kw):
        return self.env.client.post(path, json=json, headers=self.h(who), **kw)

    def get(self, path: str, who: str, **kw):
        return self.env.client.get(path, headers=self.h(who), **kw)

    def ask(self, pixels: list[tuple[int, int]], group: str = "high"):
        queries = [{"image_id": self.image_id, "y": y, "x": x, "group": group} for y, x in pixels]
        return self.post(f"/api/v1/runs/{self.run_id}/queries", "trainer", {"queries": queries})

    def claim(self, who: str = "alice", n: int = 10, lease: int | None = None):
        body: dict[str, int] = {"n": n}
        if lease:
            body["lease_seconds"] = lease
        r = self.post(f"/api/v1/runs/{self.run_id}/claims", who, body)
        assert r.status_code == 200, r.text
        return r.json()["queries"]

    def answer(self, qid: int, who: str = "alice", class_id: int = 1, **extra):
        body = {"class_id": class_id, "lead_time_ms": 500, **extra}
        return self.post(f"/api/v1/queries/{qid}/answer", who, body)

    def budget(self) -> dict:
        return self.get(f"/api/v1/runs/{self.run_id}/budget", "viewer").json()


def make_world(env: Env, budget_total: int = 20) -> World:
    c = env.client
    tokens = {"admin": ADMIN}
    for role, name in [
        ("trainer", "trainer"),
        ("annotator", "alice"),
        ("annotator", "bob"),
        ("viewer", "viewer"),
    ]:
        r = c.post("/api/v1/tokens", json={"role": role, "name": name}, headers=env.headers())
        assert r.status_code == 201, r.text
        tokens[name] = r.json()["token"]
    run = c.post(
        "/api/v1/runs",
        json={
            "name": "t",
            "classes": CLASSES,
            "target_pixels": budget_total * 100,
            "budget_rate": 0.01,
            "strategy": "full",
            "config": {},
        },
        headers=env.headers(tokens["trainer"]),
    )
    assert run.status_code == 201, run.text
    assert run.json()["budget_total"] == budget_total
    img = c.post(
        f"/api/v1/runs/{run.json()['id']}/images",
        json={
            "images": [{"key": "tgt/000001", "width": 8, "height": 4, "png_base64": png_b64(8, 4)}]
        },
        headers=env.headers(tokens["trainer"]),
    )
    assert img.status_code == 201, img.text
    return World(env, run.json()["id"], img.json()["images"][0]["id"], tokens)


@pytest.fixture
def world(env: Env) -> World:
    return make_world(env)


@pytest.fixture
def world_factory(env: Env) -> Callable[..., World]:
    return lambda **kw: make_world(env, **kw)
