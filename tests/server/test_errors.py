"""Bad inputs give 4xx JSON errors and leave the database unchanged."""

from __future__ import annotations


def _assert_error(r, status: int, code: str | None = None) -> None:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert isinstance(err["message"], str) and err["message"]
    if code:
        assert err["code"] == code


def test_malformed_json(world):
    r = world.env.client.post(
        f"/api/v1/runs/{world.run_id}/queries",
        content=b'{"queries": [',
        headers={**world.h("trainer"), "Content-Type": "application/json"},
    )
    _assert_error(r, 400, "malformed_json")
    assert world.budget()["reserved"] == 0


def test_wrong_content_type(world):
    r = world.env.client.post(
        f"/api/v1/runs/{world.run_id}/queries",
        content=b"queries=1",
        headers={**world.h("trainer"), "Content-Type": "application/x-www-form-urlencoded"},
    )
    _assert_error(r, 415, "unsupported_media_type")


def test_oversized_body(world):
    queries = [{"image_id": world.image_id, "y": 0, "x": 0, "group": "high"}] * 9000
    r = world.post(f"/api/v1/runs/{world.run_id}/queries", "trainer", {"queries": queries})
    _assert_error(r, 413, "payload_too_large")
    assert world.budget()["reserved"] == 0


def test_streamed_oversized_body(world):
    def chunks():
        yield b'{"queries": ['
        for _ in range(40):
            yield b" " * 8192
        yield b"]}"

    r = world.env.client.post(
        f"/api/v1/runs/{world.run_id}/queries",
        content=chunks(),
        headers={**world.h("trainer"), "Content-Type": "application/json"},
    )
    _assert_error(r, 413, "payload_too_large")


def test_validation_errors(world):
    url = f"/api/v1/runs/{world.run_id}/queries"
    bodies = [
        {"queries": []},
        {"queries": [{"image_id": 1, "y": -1, "x": 0}]},
        {"queries": [{"image_id": 1, "y": 0, "x": 0, "group": "nope"}]},
        {"x": 1},
    ]
    for body in bodies:
        _assert_error(world.post(url, "trainer", body), 422, "validation_error")
    assert world.budget()["reserved"] == 0


def test_unknown_run_and_route(world):
    _assert_error(world.get("/api/v1/runs/999", "viewer"), 404, "run_not_found")
    _assert_error(world.get("/api/v1/nope", "viewer"), 404, "not_found")
    _assert_error(world.env.client.delete("/health"), 405, "method_not_allowed")


def test_health_and_ready(env):
    assert env.client.get("/health").json() == {"status": "ok"}
    assert env.client.get("/ready").json() == {"status": "ready", "database": "ok", "queue": "ok"}
