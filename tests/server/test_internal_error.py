"""A failure inside a route answers with the JSON envelope (500), never Starlette's plain text,
and /openapi.json says so for every route."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from server.main import create_app
from server.services import tokens
from tests.server.conftest import ADMIN, Env


def test_a_failing_route_answers_500_with_the_envelope(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_args: object) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(tokens, "list_tokens", broken)
    with TestClient(create_app(env.settings), raise_server_exceptions=False) as client:
        r = client.get("/api/v1/tokens", headers={"Authorization": f"Bearer {ADMIN}"})
        assert r.status_code == 500
        assert r.headers["content-type"] == "application/json"
        assert r.json()["error"]["code"] == "internal_error"
        assert "disk on fire" not in r.text  # the cause is logged, not shown
        assert client.get("/health").status_code == 200  # the server goes on


def test_every_route_documents_its_500_and_database_routes_their_503(env: Env) -> None:
    schema = env.client.get("/openapi.json").json()
    envelope = {"$ref": "#/components/schemas/ErrorOut"}
    for path, ops in schema["paths"].items():
        for method, op in ops.items():
            body = op["responses"]["500"]["content"]["application/json"]["schema"]
            assert body == envelope, f"{method} {path}"
    assert "503" in schema["paths"]["/api/v1/runs"]["get"]["responses"]
    assert "503" not in schema["paths"]["/health"]["get"]["responses"]
