"""Security: every /api/v1 route checks its role, tokens are stored hashed, production refuses
default secrets, CORS is explicit, request bodies are bounded."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from server.main import create_app, main
from server.settings import DEV_ADMIN_TOKEN, Settings
from tests.server.conftest import ADMIN, World

ROOT = Path(__file__).resolve().parents[2]
ALL = {"admin", "trainer", "annotator", "viewer"}
TRAINER, ANNOTATOR = {"admin", "trainer"}, {"admin", "annotator"}
# (method, path) -> roles allowed. Every /api/v1 route of the app must be listed here.
ALLOWED: dict[tuple[str, str], set[str]] = {
    ("POST", "/api/v1/tokens"): {"admin"},
    ("GET", "/api/v1/tokens"): {"admin"},
    ("DELETE", "/api/v1/tokens/{token_id}"): {"admin"},
    ("GET", "/api/v1/me"): ALL,
    ("POST", "/api/v1/runs"): TRAINER,
    ("GET", "/api/v1/runs"): ALL,
    ("GET", "/api/v1/runs/{run_id}"): ALL,
    ("PATCH", "/api/v1/runs/{run_id}"): TRAINER,
    ("GET", "/api/v1/runs/{run_id}/budget"): ALL,
    ("POST", "/api/v1/runs/{run_id}/metrics"): TRAINER,
    ("GET", "/api/v1/runs/{run_id}/metrics"): ALL,
    ("GET", "/api/v1/runs/{run_id}/stats"): ALL,
    ("POST", "/api/v1/runs/{run_id}/images"): TRAINER,
    ("GET", "/api/v1/runs/{run_id}/images"): ALL,
    ("GET", "/api/v1/images/{image_id}.png"): ALL,
    ("POST", "/api/v1/uploads"): TRAINER,
    ("POST", "/api/v1/runs/{run_id}/queries"): TRAINER,
    ("GET", "/api/v1/runs/{run_id}/queries"): {"admin", "trainer", "viewer"},
    ("POST", "/api/v1/runs/{run_id}/claims"): ANNOTATOR,
    ("POST", "/api/v1/queries/{query_id}/answer"): ANNOTATOR,
    ("POST", "/api/v1/runs/{run_id}/answers"): ANNOTATOR,
    ("GET", "/api/v1/runs/{run_id}/answers"): {"admin", "trainer", "viewer"},
    ("POST", "/api/v1/queries/{query_id}/skip"): ANNOTATOR,
    ("POST", "/api/v1/queries/{query_id}/undo"): ANNOTATOR,
    ("POST", "/api/v1/runs/{run_id}/queries/withdraw"): TRAINER,
    ("POST", "/api/v1/queries/release"): ANNOTATOR,
    ("GET", "/api/v1/runs/{run_id}/pace"): ALL,
    ("GET", "/api/v1/runs/{run_id}/export"): ALL,
    ("GET", "/api/v1/runs/{run_id}/export/masks.zip"): ALL,
}
WHO = {"admin": "admin", "trainer": "trainer", "annotator": "alice", "viewer": "viewer"}
sqlite_only = pytest.mark.parametrize("env", ["sqlite"], indirect=True)


def api_routes(app) -> set[tuple[str, str]]:
    """Every (method, path) the app serves under /api/, from its OpenAPI document."""
    paths = app.openapi()["paths"]
    return {(m.upper(), p) for p, ops in paths.items() if p.startswith("/api/") for m in ops}


def _call(world: World, method: str, path: str, headers: dict[str, str]):
    ids = {"run_id": world.run_id, "image_id": world.image_id, "query_id": 1, "token_id": 999_999}
    return world.env.client.request(method, path.format(**ids), headers=headers)


@sqlite_only
def test_the_role_table_lists_every_api_route(world: World) -> None:
    assert api_routes(world.env.client.app) == set(ALLOWED)


@sqlite_only
@pytest.mark.parametrize("route", sorted(ALLOWED), ids=lambda r: f"{r[0]} {r[1]}")
def test_route_checks_token_and_role(world: World, route: tuple[str, str]) -> None:
    method, path = route
    assert world.ask([(0, 0)]).status_code == 201
    for headers in ({}, {"Authorization": "Bearer not-a-token"}, {"Authorization": "Basic x"}):
        r = _call(world, method, path, headers)
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized", r.text
    for role, who in WHO.items():
        r = _call(world, method, path, world.h(who))
        if role in ALLOWED[route]:
            assert r.status_code not in (401, 403), (role, r.text)
        else:
            assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden", (role, r.text)


def test_tokens_are_stored_hashed_only(world: World) -> None:
    engine = create_engine(world.env.settings.database_url)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT * FROM tokens")).all()
    engine.dispose()
    dump = repr(rows)
    assert len(rows) == len(world.tokens)  # the bootstrap admin + four created tokens
    for raw in world.tokens.values():
        assert raw not in dump
    assert ADMIN not in dump


@pytest.mark.parametrize("token", [DEV_ADMIN_TOKEN, ""], ids=["default", "empty"])
def test_production_refuses_a_weak_admin_token(monkeypatch, token: str) -> None:
    monkeypatch.setenv("ADAMCU_ENVIRONMENT", "production")
    monkeypatch.setenv("ADAMCU_ADMIN_TOKEN", token)
    with pytest.raises(SystemExit, match="ADAMCU_ADMIN_TOKEN must be set to a non-default"):
        main(["--port", "0"])


def test_production_server_process_exits_with_a_clear_message() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ADAMCU_")}
    env["ADAMCU_ENVIRONMENT"] = "production"
    proc = subprocess.run(
        [sys.executable, "-m", "server.main", "--port", "0"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    assert "ADAMCU_ADMIN_TOKEN" in proc.stderr and "Traceback" not in proc.stderr


def _client(tmp_path: Path, sqlite_template: Path, **kw) -> TestClient:
    db = tmp_path / "a.db"
    db.write_bytes(sqlite_template.read_bytes())
    kw.setdefault("web_dir", None)
    kw.setdefault("store_root", tmp_path / "store")
    cfg = Settings(database_url=f"sqlite:///{db}", admin_token=ADMIN, environment="test", **kw)
    return TestClient(create_app(cfg))


def test_cors_is_explicit(tmp_path: Path, sqlite_template: Path) -> None:
    good, bad = "https://label.example.org", "https://evil.example.com"
    with _client(tmp_path, sqlite_template, cors_origins=[good]) as c:
        r = c.get("/health", headers={"Origin": good})
        assert r.headers["access-control-allow-origin"] == good
        other = c.get("/health", headers={"Origin": bad})
        assert "access-control-allow-origin" not in other.headers
        pre = {
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        }
        ok = c.options("/api/v1/runs", headers={"Origin": good, **pre})
        assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == good
        refused = c.options("/api/v1/runs", headers={"Origin": bad, **pre})
        assert "access-control-allow-origin" not in refused.headers
        assert r.headers.get("access-control-allow-credentials") is None


def test_no_cors_by_default(tmp_path: Path, sqlite_template: Path) -> None:
    with _client(tmp_path, sqlite_template) as c:
        r = c.get("/health", headers={"Origin": "https://label.example.org"})
        assert "access-control-allow-origin" not in r.headers


def test_request_size_is_bounded(tmp_path: Path, sqlite_template: Path) -> None:
    auth = {"Authorization": f"Bearer {ADMIN}", "Content-Type": "application/json"}
    with _client(tmp_path, sqlite_template, max_body_bytes=1024) as c:
        r = c.post("/api/v1/runs", content=b" " * 2048, headers=auth)
        assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"

        def chunks():  # no Content-Length: the stream is counted as it arrives
            yield b"{"
            for _ in range(8):
                yield b" " * 512
            yield b"}"

        r = c.post("/api/v1/runs", content=chunks(), headers=auth)
        assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"
        r = c.post("/api/v1/tokens", content=b"x" * 10, headers={**auth, "Content-Length": "-1"})
        assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"


def test_pages_send_security_headers_and_a_favicon(tmp_path: Path, sqlite_template: Path) -> None:
    web = Path(__file__).resolve().parents[2] / "web"
    with _client(tmp_path, sqlite_template, web_dir=web) as c:
        for path in ("/", "/dashboard.html", "/annotate.js", "/health"):
            r = c.get(path)
            assert r.status_code == 200, path
            csp = r.headers["content-security-policy"]
            assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
            assert r.headers["x-content-type-options"] == "nosniff"
            assert r.headers["x-frame-options"] == "DENY"
            assert r.headers["referrer-policy"] == "no-referrer"
        icon = c.get("/favicon.ico")
        assert icon.status_code == 200 and icon.content[:4] == b"\x00\x00\x01\x00"
        assert "'unsafe-inline'" not in c.get("/").headers["content-security-policy"]


def test_a_lock_that_times_out_is_503_with_retry_after(tmp_path: Path, sqlite_template) -> None:
    """Another process holds SQLite's write lock past the busy timeout: the writer is told to
    retry (503, JSON, Retry-After), never a plain-text 500; readers are not blocked."""
    import sqlite3

    with _client(tmp_path, sqlite_template) as c:
        auth = {"Authorization": f"Bearer {ADMIN}"}
        assert c.get("/api/v1/me", headers=auth).status_code == 200  # bootstrap the admin
        holder = sqlite3.connect(tmp_path / "a.db", isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:  # the pooled connections wait 0.2 s, not the default 10 s
            for conn in list(c.app.state.sessionmaker.kw["bind"].pool._pool.queue):
                conn.driver_connection.execute("PRAGMA busy_timeout=200")
            assert c.get("/api/v1/runs", headers=auth).status_code == 200  # reads go on
            r = c.post("/api/v1/tokens", json={"role": "viewer", "name": "v"}, headers=auth)
        finally:
            holder.rollback()
            holder.close()
        assert r.status_code == 503, r.text
        assert r.json()["error"]["code"] == "database_busy"
        assert r.headers["retry-after"] == "1"
