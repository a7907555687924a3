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


def _run(client) -> int:
    body = {
        "name": "r",
        "classes": [{"id": 0, "name": "a"}],
        "target_pixels": 10,
        "budget_rate": 0.1,
    }
    r = client.post("/api/v1/runs", json=body, headers=AUTH)
    assert r.status_code == 201, r.text
    return r.json()["id"]


@pytest.mark.parametrize("raw", ["+1", "%201", "0_1", "1%20", "%2B1", "1.0", "1e0", "-0", "\u0661"])
def test_an_id_is_plain_decimal_digits(client, raw: str) -> None:
    run_id = _run(client)
    assert run_id == 1 and client.get("/api/v1/runs/1", headers=AUTH).status_code == 200
    for path in (f"/api/v1/runs/{raw}", f"/api/v1/runs/{raw}/budget", f"/api/v1/images/{raw}.png"):
        r = client.get(path, headers=AUTH)
        assert r.status_code in (404, 422), (path, r.status_code)
        assert r.json()["error"]["code"] in ("validation_error", "not_found"), path
    r = client.get(f"/api/v1/runs/1/answers?after={raw}", headers=AUTH)
    assert r.status_code == 422 and r.json()["error"]["code"] == "validation_error", raw


def test_two_authorization_headers_are_refused(client) -> None:
    _run(client)
    viewer = client.post("/api/v1/tokens", json={"role": "viewer", "name": "v"}, headers=AUTH)
    raw = viewer.json()["token"]
    for first, second in ((ADMIN, raw), (raw, ADMIN), (ADMIN, ADMIN)):
        headers = [("Authorization", f"Bearer {first}"), ("Authorization", f"Bearer {second}")]
        r = client.get("/api/v1/tokens", headers=headers)
        assert r.status_code == 401, r.text
        assert r.json()["error"]["code"] == "unauthorized"
    body = {
        "name": "second",
        "classes": [{"id": 0, "name": "a"}],
        "target_pixels": 1,
        "budget_rate": 0.1,
    }
    headers = [("Authorization", f"Bearer {ADMIN}"), ("Authorization", f"Bearer {raw}")]
    assert client.post("/api/v1/runs", json=body, headers=headers).status_code == 401
    assert [r["name"] for r in client.get("/api/v1/runs", headers=AUTH).json()] == ["r"]
