"""What the server accepts it serves back equal: every JSON field of every write route, read
through the read routes, on every backend. What it could store but not serve back (a lone
surrogate, JSON nested past the serialiser's limit) is refused with 422 before any write."""

from __future__ import annotations

import base64
import hashlib
from datetime import datetime, timedelta

import pytest

from server.schemas import INT32_MAX, INT53_MAX, MAX_JSON_DEPTH
from tests.server.conftest import CLASSES, UPLOAD_LIMIT, Env, World, png_b64

NAME = "Zoë \u00a0名前 🚀 \u202eetirw\u202c " + "x" * 70  # NBSP, CJK, emoji, RTL override
KEY = "target-train/城市 🚀/" + "k" * 400


def _deep(depth: int) -> dict:
    """A dict nested ``depth`` levels (itself included)."""
    value: dict = {"leaf": True}
    for _ in range(depth - 1):
        value = {"d": value}
    return value


CONFIG = {
    "deepest": _deep(MAX_JSON_DEPTH - 1),  # config itself is level 1
    "big": 10**30,
    "neg": -(2**63),
    "floats": [1e308, 5e-324, -0.0, 0.1, -1.5e-300],
    "text": "nul \x00 tab \t emoji 🚀 pair \U0001f600 bom \ufeff nbsp \u00a0",
    "": "empty key",
    "ключ 🚀": [True, False, None, [], {}],
}


def _ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _tokens_and_runs(env: Env, w: World) -> int:
    r = w.post(
        "/api/v1/tokens", "admin", {"role": "annotator", "name": NAME, "expires_in_seconds": 60}
    )
    assert r.status_code == 201, r.text
    made = r.json()
    listed = next(
        t for t in w.get("/api/v1/tokens", "admin").json()["tokens"] if t["id"] == made["id"]
    )
    assert (listed["name"], listed["role"]) == (NAME, "annotator")
    assert _ts(listed["expires_at"]) - _ts(listed["created_at"]) == timedelta(seconds=60)
    me = env.client.get("/api/v1/me", headers=env.headers(made["token"])).json()
    assert me == {"id": made["id"], "role": "annotator", "name": NAME, "run_ids": None}

    classes = [
        {"id": 0, "name": NAME, "color": [0, 0, 0]},
        {"id": 254, "name": "🚀", "color": [255, 255, 255]},
    ]
    body = {
        "name": NAME + "r" * 100,
        "classes": classes,
        "target_pixels": INT53_MAX,
        "budget_rate": 0.57,
        "strategy": NAME,
        "config": CONFIG,
    }
    r = w.post("/api/v1/runs", "trainer", body)
    assert r.status_code == 201, r.text
    run_id = r.json()["id"]
    listed = next(x for x in w.get("/api/v1/runs", "viewer").json() if x["id"] == run_id)
    for out in (r.json(), w.get(f"/api/v1/runs/{run_id}", "viewer").json(), listed):
        assert {k: out[k] for k in body} == body
    patched = env.client.patch(
        f"/api/v1/runs/{run_id}", json={"status": "finished"}, headers=w.h("trainer")
    )
    assert patched.json()["status"] == "finished"
    assert w.get(f"/api/v1/runs/{run_id}", "viewer").json()["status"] == "finished"
    scoped = {"role": "viewer", "name": NAME, "run_ids": [run_id]}  # a token scoped to runs
    made = w.post("/api/v1/tokens", "admin", scoped).json()
    listed = next(
        t for t in w.get("/api/v1/tokens", "admin").json()["tokens"] if t["id"] == made["id"]
    )
    me = env.client.get("/api/v1/me", headers=env.headers(made["token"])).json()
    assert made["run_ids"] == listed["run_ids"] == me["run_ids"] == [run_id]
    return run_id


def _images(env: Env, w: World) -> None:
    b64 = png_b64(5, 3, seed=7)
    upload = base64.b64decode(png_b64(6, 2, seed=8))
    r = env.client.post(
        "/api/v1/uploads",
        content=upload,
        headers={**w.h("trainer"), "Content-Type": "image/png"},
    )
    assert r.status_code == 201 and len(upload) < UPLOAD_LIMIT, r.text
    up = r.json()
    assert (up["sha256"], up["bytes"]) == (hashlib.sha256(upload).hexdigest(), len(upload))
    items = [
        {"key": KEY, "width": 5, "height": 3, "png_base64": b64},
        {
            "key": "ref/🚀",
            "dataset": up["dataset"],
            "path": up["path"],
            "sha256": up["sha256"],
            "width": 6,
            "height": 2,
        },
    ]
    r = w.post(f"/api/v1/runs/{w.run_id}/images", "trainer", {"images": items})
    assert r.status_code == 201, r.text
    made = r.json()["images"]
    listed = w.get(f"/api/v1/runs/{w.run_id}/images", "viewer").json()["images"]
    for item, out in zip(items, made, strict=True):
        assert {k: out[k] for k in ("key", "width", "height")} == {
            k: item[k] for k in ("key", "width", "height")
        }
        assert out in listed
    served = [w.get(f"/api/v1/images/{out['id']}.png", "viewer").content for out in made]
    assert served == [base64.b64decode(b64), upload]


def _queries_and_answers(env: Env, w: World) -> None:
    sent = [
        {"image_id": w.image_id, "y": 3, "x": 7, "group": "high", "score": -1.5e300},
        {"image_id": w.image_id, "y": 0, "x": 0, "group": "medium", "score": 0.1},
        {"image_id": w.image_id, "y": 1, "x": 2, "group": "ripu", "score": 5e-324},
        {"image_id": w.image_id, "y": 2, "x": 2, "group": "other", "score": 0.0},
        {"image_id": w.image_id, "y": 2, "x": 3, "group": "entropy", "score": 1.0},
    ]
    ids = w.post(f"/api/v1/runs/{w.run_id}/queries", "trainer", {"queries": sent}).json()["ids"]
    listed = w.get(f"/api/v1/runs/{w.run_id}/queries", "viewer").json()["queries"]
    assert [{k: q[k] for k in sent[0]} for q in listed] == sent
    before = env.clock()
    claimed = w.post(
        f"/api/v1/runs/{w.run_id}/claims", "alice", {"n": 5, "lease_seconds": 3600}
    ).json()["queries"]
    assert len(claimed) == 5
    for q in claimed:
        held = _ts(q["lease_expires_at"]) - before
        assert timedelta(seconds=3599) <= held <= timedelta(seconds=3601)
    # one answer, one correction, a batch, a release, a withdrawal
    assert w.answer(ids[0], class_id=3, lead_time_ms=INT32_MAX).status_code == 200
    assert w.answer(ids[0], class_id=1, lead_time_ms=0, correction=True).status_code == 200
    batch = {"answers": [{"query_id": ids[1], "class_id": 0, "lead_time_ms": None}]}
    assert w.post(f"/api/v1/runs/{w.run_id}/answers", "alice", batch).status_code == 200
    assert w.post("/api/v1/queries/release", "alice", {"ids": [ids[2]]}).json() == {
        "released": [ids[2]]
    }
    withdrawn = w.post(f"/api/v1/runs/{w.run_id}/queries/withdraw", "trainer", {"ids": [ids[2]]})
    assert withdrawn.json()["withdrawn"] == [ids[2]]
    answers = w.get(f"/api/v1/runs/{w.run_id}/answers", "viewer").json()["answers"]
    got = [(a["query_id"], a["class_id"], a["lead_time_ms"], a["correction"]) for a in answers]
    assert got == [(ids[0], 3, INT32_MAX, False), (ids[0], 1, 0, True), (ids[1], 0, None, False)]
    exported = w.get(f"/api/v1/runs/{w.run_id}/export", "viewer").json()["answers"]
    assert [(a["query_id"], a["class_id"], a["lead_time_ms"]) for a in exported] == [
        g[:3] for g in got
    ]
    status = {
        q["id"]: q["status"]
        for q in w.get(f"/api/v1/runs/{w.run_id}/queries", "viewer").json()["queries"]
    }
    assert status[ids[2]] == "withdrawn" and status[ids[1]] == "answered"


def _metrics(w: World) -> None:
    body = {
        "iteration": INT32_MAX,
        "labeled_pixels": 0,
        "miou": 66.125,
        "per_class_iou": [0.5, None, 1e-300, 0.0],
        "split": NAME,
    }
    assert w.post(f"/api/v1/runs/{w.run_id}/metrics", "trainer", body).status_code == 201
    out = w.get(f"/api/v1/runs/{w.run_id}/metrics", "viewer").json()["metrics"]
    assert [{k: m[k] for k in body} for m in out] == [body]


def test_every_write_field_is_served_back_equal(world: World) -> None:
    env = world.env
    _tokens_and_runs(env, world)
    _images(env, world)
    _queries_and_answers(env, world)
    _metrics(world)


def _nested_lists(depth: int) -> list:
    value: list = [1]
    for _ in range(depth - 1):
        value = [value]
    return value


UNSERVABLE = {
    "lone-surrogate": {"a": "\ud800"},
    "lone-low-surrogate-deep": {"a": [{"b": ["ok", "x\udfffy"]}]},
    "surrogate-key": {"\udc00": 1},
    "nested-256": {"a": _nested_lists(256)},
    "nested-one-too-deep": _deep(MAX_JSON_DEPTH + 1),
}


@pytest.mark.parametrize("case", list(UNSERVABLE))
def test_a_config_that_cannot_be_served_back_is_refused_before_any_write(
    world: World, case: str
) -> None:
    before = world.get("/api/v1/runs", "viewer").json()
    body = {
        "name": "x",
        "classes": CLASSES,
        "target_pixels": 10,
        "budget_rate": 0.1,
        "config": UNSERVABLE[case],
    }
    r = world.env.client.post(
        "/api/v1/runs",
        content=_dumps(body),
        headers={**world.h("trainer"), "Content-Type": "application/json"},
    )
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "validation_error"
    after = world.get("/api/v1/runs", "viewer")
    assert after.status_code == 200 and after.json() == before


def _dumps(value: object) -> bytes:
    """JSON as a client may send it: a lone surrogate as its ``\\ud800`` escape."""
    import json

    return json.dumps(value).encode()


SURROGATE = "bad \ud800"


@pytest.mark.parametrize(
    ("route", "body"),
    [
        ("/api/v1/tokens", {"role": "viewer", "name": SURROGATE}),
        (
            "/api/v1/runs",
            {"name": SURROGATE, "classes": CLASSES, "target_pixels": 1, "budget_rate": 0.1},
        ),
        (
            "/api/v1/runs",
            {
                "name": "x",
                "classes": [{"id": 0, "name": SURROGATE}],
                "target_pixels": 1,
                "budget_rate": 0.1,
            },
        ),
        (
            "/api/v1/runs",
            {
                "name": "x",
                "classes": CLASSES,
                "target_pixels": 1,
                "budget_rate": 0.1,
                "strategy": SURROGATE,
            },
        ),
        (
            "/api/v1/runs/{run}/images",
            {"images": [{"key": SURROGATE, "width": 8, "height": 4, "png_base64": png_b64(8, 4)}]},
        ),
        (
            "/api/v1/runs/{run}/images",
            {"images": [{"key": "k", "dataset": "uploads", "path": SURROGATE, "sha256": "0" * 64}]},
        ),
        (
            "/api/v1/runs/{run}/images",
            {"images": [{"key": "k", "width": 8, "height": 4, "png_base64": SURROGATE}]},
        ),
        ("/api/v1/runs/{run}/metrics", {"iteration": 1, "miou": 1.0, "split": SURROGATE}),
    ],
)
def test_a_lone_surrogate_in_any_string_is_refused(world: World, route: str, body: dict) -> None:
    reads = [
        "/api/v1/runs",
        f"/api/v1/runs/{world.run_id}/images",
        f"/api/v1/runs/{world.run_id}/metrics",
        "/api/v1/tokens",
    ]
    before = [world.get(p, "admin").json() for p in reads]
    r = world.env.client.post(
        route.format(run=world.run_id),
        content=_dumps(body),
        headers={**world.h("admin"), "Content-Type": "application/json"},
    )
    assert r.status_code == 422, r.text
    assert [world.get(p, "admin").json() for p in reads] == before
