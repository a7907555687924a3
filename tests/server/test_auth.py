"""Tokens and roles: 401 without a token, 403 for a wrong role, only hashes stored."""

from __future__ import annotations

import hashlib

from sqlalchemy import create_engine, select

from server.models import Token


def test_missing_and_unknown_token_401(world):
    c = world.env.client
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic x"}):
        r = c.get(f"/api/v1/runs/{world.run_id}", headers=headers)
        assert r.status_code == 401
        assert r.json()["error"]["code"] == "unauthorized"


def test_wrong_role_403(world):
    body = {"queries": [{"image_id": world.image_id, "y": 0, "x": 0}]}
    r = world.post(f"/api/v1/runs/{world.run_id}/queries", "alice", body)
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    assert world.post(f"/api/v1/runs/{world.run_id}/claims", "trainer", {"n": 1}).status_code == 403
    assert (
        world.post("/api/v1/tokens", "trainer", {"role": "admin", "name": "x"}).status_code == 403
    )
    r = world.get(f"/api/v1/runs/{world.run_id}/answers", "alice")
    assert r.status_code == 403
    assert world.budget()["expected"] == 20  # viewer reads


def test_admin_can_do_everything(world):
    assert world.ask([(0, 0)]).status_code == 201
    qs = world.claim("admin")
    assert world.answer(qs[0]["id"], "admin").status_code == 200


def test_me_and_no_query_param_token(world):
    """?token= only opens the web pages (their scripts move it to a header): the API refuses
    it, so tokens stay out of access logs and browser history."""
    r = world.get("/api/v1/me", "alice")
    assert r.status_code == 200
    assert r.json()["role"] == "annotator" and r.json()["name"] == "alice"
    r = world.env.client.get(f"/api/v1/me?token={world.tokens['alice']}")
    assert r.status_code == 401 and "Authorization header" in r.json()["error"]["message"]


def test_only_hashes_are_stored(world):
    engine = create_engine(world.env.settings.database_url)
    with engine.connect() as conn:
        stored = set(conn.execute(select(Token.token_hash)).scalars())
    engine.dispose()
    for raw in world.tokens.values():
        assert raw not in stored
        assert hashlib.sha256(raw.encode()).hexdigest() in stored


def test_created_tokens_pass_as_command_line_arguments(world, tmp_path):
    """Tokens go on worker and oracle command lines; a token starting with "-" reads as an
    option there (argparse exits with 2), so the server never makes one."""
    from oracle.cli import parse_args

    for i in range(200):  # a bare urlsafe token starts with "-" one time in 64
        r = world.post("/api/v1/tokens", "admin", {"role": "annotator", "name": f"a{i}"})
        token = r.json()["token"]
        assert r.status_code == 201 and not token.startswith("-")
        assert parse_args(["--token", token, "--data", str(tmp_path)]).token == token


def test_a_rotated_admin_secret_stops_working_at_start_up(env):
    """Issue 22, item 3: started with secret-1, used, restarted with secret-2: secret-1 still
    made admin tokens and GET /tokens listed two live bootstrap-admin rows."""
    from fastapi.testclient import TestClient

    from server.main import create_app

    def bearer(raw: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {raw}"}

    old = env.headers()
    assert env.client.get("/api/v1/tokens", headers=old).status_code == 200  # bootstrapped
    settings = env.settings.model_copy(update={"admin_token": "secret-2"})
    with TestClient(create_app(settings, clock=env.clock)) as client:
        body = {"role": "admin", "name": "sneaky"}
        r = client.post("/api/v1/tokens", json=body, headers=old)
        assert r.status_code == 401 and "revoked" in r.json()["error"]["message"], r.text
        assert client.get("/api/v1/tokens", headers=old).status_code == 401
        r = client.get("/api/v1/tokens", headers=bearer("secret-2"))
        assert r.status_code == 200, r.text
        rows = [t for t in r.json()["tokens"] if t["name"] == "bootstrap-admin"]
        assert [t["revoked_at"] is None for t in rows] == [False, True]  # one live row
        r = client.post("/api/v1/tokens", json={"role": "viewer", "name": "v"}, headers=old)
        assert r.status_code == 401
    # restarting with the same secret keeps it; the retired one never comes back
    with TestClient(create_app(settings, clock=env.clock)) as client:
        assert client.get("/api/v1/tokens", headers=bearer("secret-2")).status_code == 200
    back = env.settings.model_copy(update={"admin_token": env.settings.admin_token})
    with TestClient(create_app(back, clock=env.clock)) as client:
        assert client.get("/api/v1/me", headers=old).status_code == 401
        assert client.get("/api/v1/me", headers=bearer("secret-2")).status_code == 401


def test_the_bootstrap_name_is_reserved(world):
    r = world.post("/api/v1/tokens", "admin", {"role": "admin", "name": "bootstrap-admin"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "reserved_name", r.text
