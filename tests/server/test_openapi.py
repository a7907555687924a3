"""/openapi.json says what the server sends: the Bearer scheme, and for every refusal a route
can send, the status with the ``ErrorOut`` envelope (never FastAPI's ``{"detail": ...}``).

The scenario below provokes every kind of refusal on every route it can; the request counter of
``/metrics`` records (method, route, status) of each reply, and each of those must be documented
for its operation.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from server.api.metrics import REQUESTS
from server.main import create_app
from server.settings import Settings
from tests.server.conftest import ADMIN, Clock, Env, World, make_world

ENVELOPE = {"$ref": "#/components/schemas/ErrorOut"}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> Iterator[World]:
    path = tmp_path_factory.mktemp("openapi") / "adamcu.db"
    shutil.copy(sqlite_template, path)
    cfg = Settings(
        database_url=f"sqlite:///{path}",
        admin_token=ADMIN,
        environment="test",
        max_body_bytes=64 * 1024,
        web_dir=None,
        store_root=path.parent / "store",
    )
    clock = Clock()
    with TestClient(create_app(cfg, clock=clock)) as client:
        yield make_world(Env(cfg, client, clock, "sqlite"), budget_total=3)


def operations(schema: dict) -> Iterator[tuple[str, str, dict]]:
    for path, ops in schema["paths"].items():
        for method, op in ops.items():
            yield method.upper(), path, op


def test_bearer_scheme_and_docs(world: World) -> None:
    client = world.env.client
    schema = client.get("/openapi.json").json()
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    secured = {path for _, path, op in operations(schema) if op.get("security")}
    assert "/api/v1/runs" in secured and "/metrics" in secured and "/health" not in secured
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


def test_every_refusal_in_the_document_is_the_envelope(world: World) -> None:
    schema = world.env.client.get("/openapi.json").json()
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    for method, path, op in operations(schema):
        for status, response in op["responses"].items():
            if status.startswith("4"):
                body = response["content"]["application/json"]["schema"]
                assert body == ENVELOPE, f"{method} {path} {status}: {body}"
        if op.get("security"):
            assert "401" in op["responses"], f"{method} {path}"


def _provoke(w: World) -> None:
    """Every refusal kind, on the routes that can send it."""
    c, run, img = w.env.client, w.run_id, w.image_id
    schema = c.get("/openapi.json").json()
    for method, path, _ in operations(schema):  # no token: 401 (or 200 where none is needed)
        url = path.replace("{run_id}", str(run)).replace("{query_id}", "1")
        url = url.replace("{token_id}", "1")
        c.request(method, url.replace("{image_id}", str(img)), json={})
    for method, path, _ in operations(schema):  # unknown ids: 404, out of range: 422
        for wrong in ("999999", "99999999999"):
            url = path.replace("{run_id}", wrong).replace("{query_id}", wrong)
            url = url.replace("{token_id}", wrong)
            c.request(method, url.replace("{image_id}", wrong), json={}, headers=w.h("admin"))
    queries = f"/api/v1/runs/{run}/queries"
    w.post(queries, "alice", {"queries": []})  # 403
    c.post(
        queries,
        content=b"{not json",
        headers={**w.h("trainer"), "content-type": "application/json"},
    )
    c.post(queries, content=b"x=1", headers={**w.h("trainer"), "content-type": "text/plain"})
    c.post(queries, json={"pad": "x" * 70_000}, headers=w.h("trainer"))  # 413
    [gone] = w.ask([(3, 3)]).json()["ids"]
    w.post(f"/api/v1/runs/{run}/queries/withdraw", "trainer", {"ids": [gone]})
    w.post(f"/api/v1/queries/{gone}/skip", "alice")  # 410 withdrawn by the trainer
    assert w.ask([(0, 0), (0, 1)]).status_code == 201
    w.ask([(0, 0)])  # 409 duplicate pixel
    w.ask([(1, 0), (1, 1)])  # 409 budget
    w.ask([(9, 9)])  # 422 outside the image
    [q1, q2] = w.claim("alice", n=2, lease=5)
    w.answer(q1["id"], class_id=2)  # 422 unknown class
    w.post(f"/api/v1/queries/{q2['id']}/skip", "bob")  # 409 not leased to bob
    w.post(f"/api/v1/queries/{q2['id']}/undo", "bob")  # 409 nothing to undo
    w.env.clock.advance(60)
    w.answer(q1["id"])  # 410 lease expired
    w.post(
        f"/api/v1/runs/{run}/answers", "alice", {"answers": [{"query_id": q2["id"], "class_id": 1}]}
    )
    w.get(f"/api/v1/images/{img}.png?cx=100&cy=100", "viewer")  # 400 outside
    w.post(
        f"/api/v1/runs/{run}/answers",
        "alice",
        {"answers": [{"query_id": q1["id"], "class_id": 1}, {"query_id": q1["id"], "class_id": 1}]},
    )


def test_every_status_a_route_sent_is_documented_with_the_envelope(world: World) -> None:
    _provoke(world)
    schema = world.env.client.get("/openapi.json").json()
    documented = {(m, p): op["responses"] for m, p, op in operations(schema)}
    seen: set[int] = set()
    unrouted: set[str] = set()  # 413 and 415 are sent before routing (BodyLimitMiddleware)
    for metric in REQUESTS.collect():
        for sample in metric.samples:
            if not sample.name.endswith("_total") or sample.value == 0:
                continue
            method, route, status = (sample.labels[k] for k in ("method", "route", "status"))
            if route == "unmatched":
                unrouted.add(status)
            if (method, route) not in documented:
                continue  # a route of FastAPI's own (/docs) or no route at all
            seen.add(int(status))
            assert status in documented[method, route], f"{method} {route} sent {status}"
    assert {400, 401, 403, 404, 409, 410, 422} <= seen
    assert {"413", "415"} <= unrouted
    for (method, path), responses in documented.items():
        if "requestBody" in schema["paths"][path][method.lower()]:
            assert {"413", "415"} <= set(responses), f"{method} {path}"
