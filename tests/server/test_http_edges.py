"""The edges of HTTP: wrong methods, ids that are not plain numbers, odd headers. Every answer
is the JSON envelope, never the web UI's 404 page or a plain-text error."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from server.main import create_app
from server.settings import Settings
from tests.server.conftest import ADMIN

WEB = Path(__file__).resolve().parents[2] / "web"
AUTH = {"Authorization": f"Bearer {ADMIN}"}


@pytest.fixture
def client(tmp_path: Path, sqlite_template: Path):
    db = tmp_path / "a.db"
    db.write_bytes(sqlite_template.read_bytes())
    cfg = Settings(
        database_url=f"sqlite:///{db}",
        admin_token=ADMIN,
        environment="test",
        web_dir=WEB,  # the static mount at "/" is what caught wrong methods
        store_root=tmp_path / "store",
    )
    with TestClient(create_app(cfg)) as c:
        yield c


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("GET", "/api/v1/queries/1/answer", {"POST"}),
        ("GET", "/api/v1/uploads", {"POST"}),
        ("HEAD", "/api/v1/runs", {"GET", "POST"}),
        ("PUT", "/api/v1/runs/1", {"GET", "PATCH"}),
        ("DELETE", "/api/v1/runs/1/export/masks.zip", {"GET"}),
        ("POST", "/health", {"GET"}),
    ],
)
def test_a_wrong_method_is_405_with_allow(client, method: str, path: str, allow: set[str]):
    r = client.request(method, path, headers=AUTH)
    assert r.status_code == 405, r.text
    assert {m.strip() for m in r.headers["allow"].split(",")} == allow
    if method != "HEAD":  # a HEAD answer has no body
        assert r.json()["error"]["code"] == "method_not_allowed"


def test_an_unknown_api_path_is_the_envelope_not_the_web_ui(client):
    for path in ("/api/v1/nothing", "/api/v1/runs/1/nothing", "/api", "/api/"):
        r = client.get(path, headers=AUTH)
        assert r.status_code == 404, path
        assert r.json()["error"]["code"] == "not_found", path
    assert client.get("/dashboard.html").status_code == 200  # the web UI is still served
    assert client.get("/").status_code == 200
