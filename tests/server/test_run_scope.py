"""Tokens scoped to runs (issue 22, item 10): a scoped trainer, annotator or viewer gets 404 on
every other run, through every route that names a run (its id, or one of its queries or
images); unscoped tokens see every run as before."""

from __future__ import annotations

import pytest

from tests.server.conftest import World, make_world, png_b64
from tests.server.test_security import ALLOWED

RUN_ROUTES = sorted(
    r for r in ALLOWED if any(k in r[1] for k in ("{run_id}", "{query_id}", "{image_id}"))
)
sqlite_only = pytest.mark.parametrize("env", ["sqlite"], indirect=True)


def _scoped(world: World, role: str, run_ids: list[int], name: str = "scoped") -> dict:
    body = {"role": role, "name": name, "run_ids": run_ids}
    r = world.post("/api/v1/tokens", "admin", body)
    assert r.status_code == 201, r.text
    assert r.json()["run_ids"] == sorted(set(run_ids))
    return {"Authorization": f"Bearer {r.json()['token']}"}


def _role(route: tuple[str, str]) -> str:
    return next(r for r in ("trainer", "annotator", "viewer") if r in ALLOWED[route])


def _ids(world: World) -> dict[str, int]:
    """A run's ids for the path: the run, its image and a query leased to nobody."""
    [qid] = world.ask([(0, 0)]).json()["ids"]
    return {"run_id": world.run_id, "image_id": world.image_id, "query_id": qid}


@sqlite_only
@pytest.mark.parametrize("route", RUN_ROUTES, ids=lambda r: f"{r[0]} {r[1]}")
def test_a_scoped_token_gets_404_on_other_runs(env, route: tuple[str, str]) -> None:
    """Before: any trainer read any run's answers (moving its cursor), withdrew its queries
    and finished it. Now the other run does not exist for a token scoped away from it."""
    method, path = route
    mine, other = make_world(env), make_world(env)
    headers = _scoped(mine, _role(route), [mine.run_id])
    client = env.client
    r = client.request(method, path.format(**_ids(other)), headers=headers, json={})
    assert r.status_code == 404, (route, r.status_code, r.text)
    assert r.json()["error"]["code"].endswith("not_found"), r.text
    r = client.request(method, path.format(**_ids(mine)), headers=headers, json={})
    assert r.status_code not in (401, 403, 404), (route, r.status_code, r.text)


def test_scoped_tokens_list_create_and_label_only_their_runs(env) -> None:
    a, b = make_world(env), make_world(env)
    client = env.client
    trainer = _scoped(a, "trainer", [a.run_id])
    listed = client.get("/api/v1/runs", headers=trainer).json()
    assert [r["id"] for r in listed] == [a.run_id]
    assert {r["id"] for r in a.get("/api/v1/runs", "viewer").json()} >= {a.run_id, b.run_id}
    me = client.get("/api/v1/me", headers=trainer).json()
    assert me["run_ids"] == [a.run_id] and me["role"] == "trainer"
    body = {**{k: v for k, v in listed[0].items() if k in ("name", "classes", "strategy")}}
    body.update(target_pixels=100, budget_rate=0.1, config={})
    r = client.post("/api/v1/runs", json=body, headers=trainer)
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden", r.text
    # an annotator scoped to both runs labels in both; one scoped to a claims nothing of b
    both = _scoped(a, "annotator", [b.run_id, a.run_id, a.run_id], "both")
    only_a = _scoped(a, "annotator", [a.run_id], "only-a")
    [qa] = a.ask([(1, 1)]).json()["ids"]
    [qb] = b.ask([(1, 1)]).json()["ids"]
    for run_id, qid in ((a.run_id, qa), (b.run_id, qb)):
        r = client.post(f"/api/v1/runs/{run_id}/claims", json={"n": 1}, headers=both)
        assert [q["id"] for q in r.json()["queries"]] == [qid], r.text
        r = client.post(f"/api/v1/queries/{qid}/answer", json={"class_id": 1}, headers=both)
        assert r.status_code == 200, r.text
    r = client.post(f"/api/v1/runs/{b.run_id}/claims", json={"n": 1}, headers=only_a)
    assert r.status_code == 404 and r.json()["error"]["code"] == "run_not_found"
    r = client.post(f"/api/v1/queries/{qb}/undo", headers=only_a)
    assert r.status_code == 404 and r.json()["error"]["code"] == "query_not_found"
    listed = a.get("/api/v1/tokens", "admin").json()["tokens"]
    assert {t["name"]: t["run_ids"] for t in listed}["both"] == sorted([a.run_id, b.run_id])
    assert {t["name"]: t["run_ids"] for t in listed}["alice"] is None  # unscoped as before


def test_a_scope_names_existing_runs_and_never_an_admin(world: World) -> None:
    for body in (
        {"role": "admin", "name": "x", "run_ids": [world.run_id]},
        {"role": "viewer", "name": "x", "run_ids": [world.run_id, 999_999]},
    ):
        r = world.post("/api/v1/tokens", "admin", body)
        assert r.status_code == 422 and r.json()["error"]["code"] == "bad_scope", r.text
    for run_ids in ([], [-1], "1"):
        r = world.post(
            "/api/v1/tokens", "admin", {"role": "viewer", "name": "x", "run_ids": run_ids}
        )
        assert r.status_code == 422 and r.json()["error"]["code"] == "validation_error", r.text
    names = [t["name"] for t in world.get("/api/v1/tokens", "admin").json()["tokens"]]
    assert "x" not in names


def test_a_scoped_viewer_sees_no_image_of_another_run(world_factory) -> None:
    a, b = world_factory(), world_factory()
    viewer = _scoped(a, "viewer", [a.run_id])
    img = b.post(
        f"/api/v1/runs/{b.run_id}/images",
        "trainer",
        {"images": [{"key": "tgt/x", "width": 8, "height": 4, "png_base64": png_b64(8, 4, 3)}]},
    ).json()["images"][0]["id"]
    r = a.env.client.get(f"/api/v1/images/{img}.png", headers=viewer)
    assert r.status_code == 404 and r.json()["error"]["code"] == "image_not_found"
    r = a.env.client.get(f"/api/v1/images/{a.image_id}.png", headers=viewer)
    assert r.status_code == 200


def test_a_scoped_annotator_cannot_probe_another_runs_queries_by_release(world_factory) -> None:
    a, b = world_factory(), world_factory()
    only_a = _scoped(a, "annotator", [a.run_id])
    [qb] = b.ask([(2, 2)]).json()["ids"]
    r = a.env.client.post("/api/v1/queries/release", json={"ids": [qb]}, headers=only_a)
    assert r.status_code == 404 and r.json()["error"]["code"] == "query_not_found", r.text
    [qa] = a.ask([(2, 2)]).json()["ids"]
    r = a.env.client.post("/api/v1/queries/release", json={"ids": [qa]}, headers=only_a)
    assert r.status_code == 200 and r.json()["released"] == []
