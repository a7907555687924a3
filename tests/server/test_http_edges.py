"""The edges of HTTP: wrong methods, ids that are not plain numbers, odd headers. Every answer
is the JSON envelope, never the web UI's 404 page or a plain-text error."""

from __future__ import annotations

import json
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


@pytest.fixture
def live(tmp_path: Path, sqlite_template: Path):
    """adamcu-server's uvicorn (its protocol included) on a free port, in a thread."""
    import threading

    import uvicorn

    from server.main import server_options
    from stack.processes import free_port

    db = tmp_path / "live.db"
    db.write_bytes(sqlite_template.read_bytes())
    cfg = Settings(
        database_url=f"sqlite:///{db}",
        admin_token=ADMIN,
        environment="test",
        web_dir=None,
        store_root=tmp_path / "store",
    )
    port = free_port()
    config = uvicorn.Config(
        create_app(cfg), host="127.0.0.1", port=port, log_level="warning", **server_options()
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        thread.join(0.05)
    assert server.started
    yield port
    server.should_exit = True
    thread.join(10)


def _raw(port: int, data: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``data`` on a fresh connection; the status, headers and body of the answer."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before it read everything
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
            if b"\r\n\r\n" in reply and b"content-length" in reply.lower():
                head, _, body = reply.partition(b"\r\n\r\n")
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                if len(body) >= length:
                    break
    head, _, body = reply.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GARBAGE\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n",
        b"GET /health HTTP/9.9\r\nHost: x\r\n\r\n",
        b"POST /api/v1/runs HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
    ],
)
def test_malformed_http_gets_the_envelope(live: int, request_bytes: bytes) -> None:
    status, headers, body = _raw(live, request_bytes)
    assert status == 400 and headers["content-type"] == "application/json"
    assert json.loads(body)["error"]["code"] == "bad_request"


def test_request_headers_are_bounded_as_they_arrive(live: int) -> None:
    big = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (16 << 20) + b"\r\n\r\n"
    status, headers, body = _raw(live, big)
    assert status == 431 and json.loads(body)["error"]["code"] == "headers_too_large"
    many = b"".join(b"X-H%d: %s\r\n" % (i, b"b" * 1000) for i in range(100))
    status, _, body = _raw(live, b"GET /health HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n")
    assert status == 431, body
    fine = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Ok: " + b"c" * 30_000 + b"\r\n\r\n"
    status, _, body = _raw(live, fine)
    assert status == 200 and json.loads(body) == {"status": "ok"}


def test_headers_over_the_limit_are_431_under_any_asgi_server(client) -> None:
    r = client.get("/health", headers={"X-Big": "a" * (100 << 10)})
    assert r.status_code == 431 and r.json()["error"]["code"] == "headers_too_large"
    assert client.get("/health", headers={"X-Ok": "a" * 30_000}).status_code == 200
