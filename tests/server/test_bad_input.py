"""A table of bad inputs: each is a 4xx JSON error and changes nothing in the database.

Every case starts from the same world (tests/server/conftest.py) plus three queries:
``answered`` (answered by alice), ``leased`` (leased to alice) and ``pending``. A case may
prepare more state; the database is snapshotted after that (row counts of every table, every
run's budget counters, every query's status and lease) and compared after the bad request.
"""

from __future__ import annotations

import base64
import json
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from tests.server.conftest import TABLES, World, png_b64

Ctx = dict[str, int]


@dataclass
class Case:
    id: str
    act: Callable[[World, Ctx], Any]
    status: int
    code: str
    prep: Callable[[World, Ctx], None] = field(default=lambda w, c: None)


def _ask(w: World, *queries: dict[str, Any], run: int | None = None, who: str = "trainer"):
    body = {"queries": [{"image_id": w.image_id, "group": "high", **q} for q in queries]}
    return w.post(f"/api/v1/runs/{run or w.run_id}/queries", who, body)


def _raw(w: World, path: str, body: bytes, ctype: str = "application/json", who="trainer"):
    return w.env.client.post(path, content=body, headers={**w.h(who), "Content-Type": ctype})


def _image(w: World, **fields: Any):
    item = {"key": "tgt/bad", "width": 8, "height": 4, "png_base64": png_b64(8, 4), **fields}
    return w.post(f"/api/v1/runs/{w.run_id}/images", "trainer", {"images": [item]})


def _expire(w: World, c: Ctx) -> None:
    [q] = w.claim("bob", n=1, lease=5)
    c["expired"] = q["id"]
    w.env.clock.advance(10)


def _finish(w: World, c: Ctx) -> None:
    r = w.env.client.patch(
        f"/api/v1/runs/{w.run_id}", json={"status": "finished"}, headers=w.h("trainer")
    )
    assert r.status_code == 200, r.text


def _withdraw(w: World, ids: list[int], who: str = "trainer"):
    return w.post(f"/api/v1/runs/{w.run_id}/queries/withdraw", who, {"ids": ids})


def _withdrawn(w: World, c: Ctx) -> None:
    r = _withdraw(w, [c["pending"]])
    assert r.status_code == 200 and r.json()["withdrawn"] == [c["pending"]], r.text


def _patch(w: World, who: str, status: str):
    return w.env.client.patch(f"/api/v1/runs/{w.run_id}", json={"status": status}, headers=w.h(who))


def _png_header(width: int, height: int) -> str:
    """A tiny PNG whose header claims ``width`` x ``height`` (an image bomb: nothing may
    decode it)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 4096, 9)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    return base64.b64encode(png).decode()


def _token(w: World, c: Ctx, **fields: Any) -> None:
    body = {"role": "annotator", "name": "carol", **fields}
    r = w.post("/api/v1/tokens", "admin", body)
    assert r.status_code == 201, r.text
    c["token_id"] = r.json()["id"]
    w.tokens["carol"] = r.json()["token"]


def _expired_token(w: World, c: Ctx) -> None:
    _token(w, c, expires_in_seconds=60)
    assert w.get("/api/v1/me", "carol").status_code == 200  # cached while valid
    w.env.clock.advance(61)


def _revoked_token(w: World, c: Ctx) -> None:
    _token(w, c)
    assert w.get("/api/v1/me", "carol").status_code == 200
    r = w.env.client.delete(f"/api/v1/tokens/{c['token_id']}", headers=w.h("admin"))
    assert r.status_code == 200 and r.json()["revoked_at"], r.text


NUL = "bad\x00name"


def _run_body(**fields: Any) -> dict[str, Any]:
    return {
        "name": "bad",
        "classes": [{"id": 0, "name": "road"}],
        "target_pixels": 100,
        "budget_rate": 0.5,
        **fields,
    }


RUNS = "/api/v1/runs"
Q = "/api/v1/queries"
CASES = [
    # --- pixels and images of a query batch
    Case("pixel-negative-x", lambda w, c: _ask(w, {"y": 0, "x": -1}), 422, "validation_error"),
    Case("pixel-x-eq-width", lambda w, c: _ask(w, {"y": 0, "x": 8}), 422, "pixel_out_of_range"),
    Case("pixel-y-eq-height", lambda w, c: _ask(w, {"y": 4, "x": 0}), 422, "pixel_out_of_range"),
    Case("pixel-huge", lambda w, c: _ask(w, {"y": 0, "x": 2**63}), 422, "validation_error"),
    Case("pixel-float", lambda w, c: _ask(w, {"y": 1, "x": 1.5}), 422, "validation_error"),
    Case("pixel-string", lambda w, c: _ask(w, {"y": 1, "x": "one"}), 422, "validation_error"),
    Case(
        "score-nan",
        lambda w, c: _raw(
            w,
            f"{RUNS}/{w.run_id}/queries",
            json.dumps(
                {"queries": [{"image_id": w.image_id, "y": 3, "x": 3, "score": float("nan")}]}
            ).encode(),
        ),
        422,
        "validation_error",
    ),
    Case(
        "unknown-image",
        lambda w, c: _ask(w, {"image_id": 999_999, "y": 0, "x": 5}),
        422,
        "unknown_image",
    ),
    Case(
        "image-id-beyond-int32",
        lambda w, c: _ask(w, {"image_id": 2**40, "y": 0, "x": 5}),
        422,
        "validation_error",
    ),
    Case(
        "run-id-beyond-int32",
        lambda w, c: w.get(f"{RUNS}/{2**40}", "viewer"),
        422,
        "validation_error",
    ),
    Case("unknown-run", lambda w, c: _ask(w, {"y": 0, "x": 5}, run=999_999), 404, "run_not_found"),
    Case("pixel-already-asked", lambda w, c: _ask(w, {"y": 0, "x": 0}), 409, "duplicate_pixel"),
    Case(
        "duplicate-pixel-in-batch",
        lambda w, c: _ask(w, {"y": 2, "x": 2}, {"y": 2, "x": 2}),
        409,
        "duplicate_pixel",
    ),
    Case("empty-query-batch", lambda w, c: _ask(w), 422, "validation_error"),
    Case(
        "query-batch-over-limit",
        lambda w, c: _ask(w, *[{"y": 0, "x": 0}] * 10_001),
        413,
        "payload_too_large",
    ),
    Case(
        "budget-exceeded",
        lambda w, c: _ask(w, *[{"y": i // 8, "x": i % 8} for i in range(8, 26)]),
        409,
        "budget_exceeded",
    ),
    Case("run-finished", lambda w, c: _ask(w, {"y": 3, "x": 3}), 409, "run_finished", _finish),
    Case(
        "wrong-group",
        lambda w, c: _ask(w, {"y": 3, "x": 3, "group": "nope"}),
        422,
        "validation_error",
    ),
    # --- claims
    Case(
        "claim-negative-n",
        lambda w, c: w.post(f"{RUNS}/{w.run_id}/claims", "alice", {"n": -1}),
        422,
        "validation_error",
    ),
    Case(
        "claim-zero-n",
        lambda w, c: w.post(f"{RUNS}/{w.run_id}/claims", "alice", {"n": 0}),
        422,
        "validation_error",
    ),
    Case(
        "claim-huge-n",
        lambda w, c: w.post(f"{RUNS}/{w.run_id}/claims", "alice", {"n": 10**12}),
        422,
        "validation_error",
    ),
    Case(
        "claim-short-lease",
        lambda w, c: w.post(f"{RUNS}/{w.run_id}/claims", "alice", {"n": 1, "lease_seconds": 1}),
        422,
        "validation_error",
    ),
    Case(
        "claim-unknown-run",
        lambda w, c: w.post(f"{RUNS}/999999/claims", "alice", {"n": 1}),
        404,
        "run_not_found",
    ),
    # --- answers, skips, undo
    Case("unknown-class", lambda w, c: w.answer(c["leased"], class_id=2), 422, "unknown_class"),
    Case("class-255", lambda w, c: w.answer(c["leased"], class_id=255), 422, "validation_error"),
    Case(
        "negative-lead-time",
        lambda w, c: w.answer(c["leased"], lead_time_ms=-5),
        422,
        "validation_error",
    ),
    Case("answer-twice", lambda w, c: w.answer(c["answered"]), 409, "already_answered"),
    Case("answer-leased-by-other", lambda w, c: w.answer(c["leased"], "bob"), 409, "not_leased"),
    Case("answer-pending", lambda w, c: w.answer(c["pending"]), 409, "not_leased"),
    Case("answer-unknown-query", lambda w, c: w.answer(999_999), 404, "query_not_found"),
    Case(
        "answer-expired-lease",
        lambda w, c: w.answer(c["expired"], "bob"),
        410,
        "lease_expired",
        _expire,
    ),
    Case(  # refused like the answer above (issue 22, item 7): it was accepted
        "skip-expired-lease",
        lambda w, c: w.post(f"{Q}/{c['expired']}/skip", "bob"),
        410,
        "lease_expired",
        _expire,
    ),
    Case(
        "skip-by-non-holder",
        lambda w, c: w.post(f"{Q}/{c['leased']}/skip", "bob"),
        409,
        "not_leased",
    ),
    Case(
        "skip-unknown-query",
        lambda w, c: w.post(f"{Q}/999999/skip", "alice"),
        404,
        "query_not_found",
    ),
    Case(  # issue 22, item 4: bob's correction of alice's answer was stored
        "correct-another-annotators-answer",
        lambda w, c: w.answer(c["answered"], "bob", class_id=0, correction=True),
        403,
        "not_your_answer",
    ),
    Case(
        "undo-nothing",
        lambda w, c: w.post(f"{Q}/{c['answered']}/undo", "bob"),
        409,
        "nothing_to_undo",
    ),
    Case(
        "correction-unanswered",
        lambda w, c: w.answer(c["leased"], correction=True),
        409,
        "not_leased",
    ),
    Case(
        "batch-answers-empty",
        lambda w, c: w.post(f"{RUNS}/{w.run_id}/answers", "alice", {"answers": []}),
        422,
        "validation_error",
    ),
    Case(
        "batch-answers-repeat-id",
        lambda w, c: w.post(
            f"{RUNS}/{w.run_id}/answers",
            "alice",
            {"answers": [{"query_id": c["leased"], "class_id": 1}] * 2},
        ),
        400,
        "bad_request",
    ),
    Case(
        "batch-answers-one-refused",
        lambda w, c: w.post(
            f"{RUNS}/{w.run_id}/answers",
            "alice",
            {
                "answers": [
                    {"query_id": c["leased"], "class_id": 1},
                    {"query_id": c["pending"], "class_id": 1},
                ]
            },
        ),
        409,
        "not_leased",
    ),
    # --- bodies
    Case(
        "malformed-json",
        lambda w, c: _raw(w, f"{RUNS}/{w.run_id}/queries", b'{"queries": ['),
        400,
        "malformed_json",
    ),
    Case(
        "body-not-utf8",
        lambda w, c: _raw(w, f"{RUNS}/{w.run_id}/queries", b"\xff\xfe{"),
        400,
        "malformed_json",
    ),
    Case(
        "body-is-array",
        lambda w, c: _raw(w, f"{RUNS}/{w.run_id}/queries", b"[1, 2]"),
        422,
        "validation_error",
    ),
    Case("extra-field", lambda w, c: _ask(w, {"y": 3, "x": 3, "evil": 1}), 422, "validation_error"),
    Case(
        "oversized-body",
        lambda w, c: _raw(w, f"{RUNS}/{w.run_id}/queries", b" " * (300 * 1024) + b"{}"),
        413,
        "payload_too_large",
    ),
    Case(
        "wrong-content-type",
        lambda w, c: _raw(
            w, f"{RUNS}/{w.run_id}/queries", b"q=1", "application/x-www-form-urlencoded"
        ),
        415,
        "unsupported_media_type",
    ),
    # --- runs, metrics, tokens
    Case(
        "budget-rate-over-1",
        lambda w, c: w.post(RUNS, "trainer", _run_body(budget_rate=1.5)),
        422,
        "validation_error",
    ),
    Case(
        "negative-target-pixels",
        lambda w, c: w.post(RUNS, "trainer", _run_body(target_pixels=-1)),
        422,
        "validation_error",
    ),
    Case(
        "run-without-classes",
        lambda w, c: w.post(RUNS, "trainer", _run_body(classes=[])),
        422,
        "validation_error",
    ),
    Case(
        "config-with-nan",
        lambda w, c: _raw(
            w, RUNS, json.dumps(_run_body(config={"lr": [1.0, float("inf")]})).encode()
        ),
        422,
        "validation_error",
    ),
    Case(
        "patch-bad-status",
        lambda w, c: w.env.client.patch(
            f"{RUNS}/{w.run_id}", json={"status": "bogus"}, headers=w.h("trainer")
        ),
        422,
        "validation_error",
    ),
    Case(
        "metric-nan-miou",
        lambda w, c: _raw(w, f"{RUNS}/{w.run_id}/metrics", b'{"iteration": 1, "miou": NaN}'),
        422,
        "validation_error",
    ),
    Case(
        "metric-negative-iteration",
        lambda w, c: w.post(
            f"{RUNS}/{w.run_id}/metrics", "trainer", {"iteration": -1, "miou": 1.0}
        ),
        422,
        "validation_error",
    ),
    Case(
        "token-unknown-role",
        lambda w, c: w.post("/api/v1/tokens", "admin", {"role": "root", "name": "x"}),
        422,
        "validation_error",
    ),
    # --- auth
    Case("wrong-role", lambda w, c: _ask(w, {"y": 3, "x": 3}, who="alice"), 403, "forbidden"),
    Case(
        "viewer-creates-token",
        lambda w, c: w.post("/api/v1/tokens", "viewer", {"role": "admin", "name": "x"}),
        403,
        "forbidden",
    ),
    Case(
        "missing-token",
        lambda w, c: w.env.client.post(
            f"{RUNS}/{w.run_id}/queries",
            json={"queries": [{"image_id": w.image_id, "y": 3, "x": 3}]},
        ),
        401,
        "unauthorized",
    ),
    Case(
        "unknown-token",
        lambda w, c: w.env.client.post(
            f"{RUNS}/{w.run_id}/claims", json={"n": 1}, headers={"Authorization": "Bearer nope"}
        ),
        401,
        "unauthorized",
    ),
    # --- reads with bad parameters (and the trainer's cursor must not move)
    Case(
        "after-negative",
        lambda w, c: w.get(f"{RUNS}/{w.run_id}/answers?after=-1", "trainer"),
        422,
        "validation_error",
    ),
    Case(
        "after-not-int",
        lambda w, c: w.get(f"{RUNS}/{w.run_id}/answers?after=abc", "trainer"),
        422,
        "validation_error",
    ),
    Case(
        "limit-zero",
        lambda w, c: w.get(f"{RUNS}/{w.run_id}/queries?limit=0", "trainer"),
        422,
        "validation_error",
    ),
    Case(
        "export-bad-format",
        lambda w, c: w.get(f"{RUNS}/{w.run_id}/export?format=xml", "viewer"),
        422,
        "validation_error",
    ),
    # --- images
    Case(
        "png-not-png",
        lambda w, c: _image(w, png_base64=base64.b64encode(b"GIF89a..").decode()),
        422,
        "invalid_image",
    ),
    Case("png-not-base64", lambda w, c: _image(w, png_base64="***"), 422, "invalid_image"),
    Case("png-wrong-size", lambda w, c: _image(w, width=9), 422, "invalid_image"),
    Case("image-zero-width", lambda w, c: _image(w, width=0), 422, "validation_error"),
    Case(
        "crop-radius-too-big",
        lambda w, c: w.get(f"/api/v1/images/{w.image_id}.png?cx=1&cy=1&r=513", "viewer"),
        422,
        "validation_error",
    ),
    Case(
        "crop-radius-negative",
        lambda w, c: w.get(f"/api/v1/images/{w.image_id}.png?cx=1&cy=1&r=-1", "viewer"),
        422,
        "validation_error",
    ),
    Case(
        "crop-centre-outside",
        lambda w, c: w.get(f"/api/v1/images/{w.image_id}.png?cx=8&cy=0", "viewer"),
        400,
        "bad_request",
    ),
    Case(
        "crop-scale-zero",
        lambda w, c: w.get(f"/api/v1/images/{w.image_id}.png?cx=1&cy=1&scale=0", "viewer"),
        422,
        "validation_error",
    ),
    Case(
        "png-unknown-image",
        lambda w, c: w.get("/api/v1/images/999999.png", "viewer"),
        404,
        "image_not_found",
    ),
]


CASES += [
    # --- strings: no control characters (PostgreSQL cannot store NUL), bounded, safe keys
    Case(
        "nul-token-name",
        lambda w, c: w.post("/api/v1/tokens", "admin", {"role": "viewer", "name": NUL}),
        422,
        "validation_error",
    ),
    Case(
        "nul-run-name",
        lambda w, c: w.post(RUNS, "trainer", _run_body(name=NUL)),
        422,
        "validation_error",
    ),
    Case(
        "newline-run-name",
        lambda w, c: w.post(RUNS, "trainer", _run_body(name="a\nb")),
        422,
        "validation_error",
    ),
    Case(
        "nul-strategy",
        lambda w, c: w.post(RUNS, "trainer", _run_body(strategy=NUL)),
        422,
        "validation_error",
    ),
    Case(
        "nul-class-name",
        lambda w, c: w.post(RUNS, "trainer", _run_body(classes=[{"id": 0, "name": NUL}])),
        422,
        "validation_error",
    ),
    Case(
        "run-name-too-long",
        lambda w, c: w.post(RUNS, "trainer", _run_body(name="x" * 201)),
        422,
        "validation_error",
    ),
    Case(
        "duplicate-class-ids",
        lambda w, c: w.post(
            RUNS, "trainer", _run_body(classes=[{"id": 1, "name": "a"}, {"id": 1, "name": "b"}])
        ),
        422,
        "validation_error",
    ),
    Case("nul-image-key", lambda w, c: _image(w, key="tgt/\x00"), 422, "validation_error"),
    Case("key-dot-dot", lambda w, c: _image(w, key="tgt/../../etc"), 422, "validation_error"),
    Case("key-absolute", lambda w, c: _image(w, key="/etc/passwd"), 422, "validation_error"),
    Case("key-backslash", lambda w, c: _image(w, key="tgt\\..\\x"), 422, "validation_error"),
    Case("key-drive", lambda w, c: _image(w, key="C:/x"), 422, "validation_error"),
    Case("key-empty-segment", lambda w, c: _image(w, key="tgt//x"), 422, "validation_error"),
    Case(
        "nul-metric-split",
        lambda w, c: w.post(
            f"{RUNS}/{w.run_id}/metrics", "trainer", {"iteration": 1, "miou": 1.0, "split": NUL}
        ),
        422,
        "validation_error",
    ),
    # --- bounded work: crops and image bombs
    Case(
        "crop-output-too-large",
        lambda w, c: w.get(f"/api/v1/images/{w.image_id}.png?cx=2&cy=2&r=512&scale=32", "viewer"),
        422,
        "crop_too_large",
    ),
    Case(
        "image-bomb-declared",
        lambda w, c: _image(w, width=16384, height=16384, png_base64=_png_header(16384, 16384)),
        413,
        "image_too_large",
    ),
    Case(
        "image-bomb-undeclared",
        lambda w, c: _image(w, png_base64=_png_header(16384, 16384)),
        413,
        "image_too_large",
    ),
    Case(
        "png-truncated",
        lambda w, c: _image(
            w, png_base64=base64.b64encode(base64.b64decode(png_b64(8, 4))[:40]).decode()
        ),
        422,
        "invalid_image",
    ),
    # --- a finished run takes no claims, answers, skips or undos; only an admin reopens it
    Case(
        "claim-finished-run",
        lambda w, c: w.post(f"{RUNS}/{w.run_id}/claims", "alice", {"n": 1}),
        409,
        "run_finished",
        _finish,
    ),
    Case("answer-finished-run", lambda w, c: w.answer(c["leased"]), 409, "run_finished", _finish),
    Case(
        "batch-answer-finished-run",
        lambda w, c: w.post(
            f"{RUNS}/{w.run_id}/answers",
            "alice",
            {"answers": [{"query_id": c["leased"], "class_id": 1}]},
        ),
        409,
        "run_finished",
        _finish,
    ),
    Case(
        "skip-finished-run",
        lambda w, c: w.post(f"{Q}/{c['leased']}/skip", "alice"),
        409,
        "run_finished",
        _finish,
    ),
    Case(
        "undo-finished-run",
        lambda w, c: w.post(f"{Q}/{c['answered']}/undo", "alice"),
        409,
        "run_finished",
        _finish,
    ),
    Case(
        "correction-finished-run",
        lambda w, c: w.answer(c["answered"], class_id=0, correction=True),
        409,
        "run_finished",
        _finish,
    ),
    Case(
        "trainer-reopens-run",
        lambda w, c: _patch(w, "trainer", "active"),
        403,
        "forbidden",
        _finish,
    ),
    # --- tokens
    Case(
        "query-param-token",
        lambda w, c: w.env.client.get(f"/api/v1/me?token={w.tokens['alice']}"),
        401,
        "unauthorized",
    ),
    Case(
        "expired-token",
        lambda w, c: w.get("/api/v1/me", "carol"),
        401,
        "unauthorized",
        _expired_token,
    ),
    Case(
        "revoked-token",
        lambda w, c: w.get("/api/v1/me", "carol"),
        401,
        "unauthorized",
        _revoked_token,
    ),
    Case(
        "token-lifetime-too-short",
        lambda w, c: w.post(
            "/api/v1/tokens", "admin", {"role": "viewer", "name": "x", "expires_in_seconds": 1}
        ),
        422,
        "validation_error",
    ),
    Case(
        "revoke-unknown-token",
        lambda w, c: w.env.client.delete("/api/v1/tokens/999999", headers=w.h("admin")),
        404,
        "not_found",
    ),
    Case(
        "viewer-revokes-token",
        lambda w, c: w.env.client.delete("/api/v1/tokens/1", headers=w.h("viewer")),
        403,
        "forbidden",
    ),
    Case("viewer-lists-tokens", lambda w, c: w.get("/api/v1/tokens", "viewer"), 403, "forbidden"),
    # --- the session mode: withdraw (trainer), release (annotator), finishing twice
    Case("withdraw-leased", lambda w, c: _withdraw(w, [c["leased"]]), 409, "not_withdrawable"),
    Case(
        "withdraw-answered",
        lambda w, c: _withdraw(w, [c["answered"], c["leased"]]),
        409,
        "not_withdrawable",
    ),
    Case(
        "withdraw-as-annotator",
        lambda w, c: _withdraw(w, [c["pending"]], "alice"),
        403,
        "forbidden",
    ),
    Case(
        "withdraw-as-viewer", lambda w, c: _withdraw(w, [c["pending"]], "viewer"), 403, "forbidden"
    ),
    Case(
        "withdraw-unknown-id",
        lambda w, c: _withdraw(w, [c["pending"], 999_999]),
        404,
        "query_not_found",
    ),
    Case(
        "withdraw-id-twice",
        lambda w, c: _withdraw(w, [c["pending"], c["pending"]]),
        400,
        "bad_request",
    ),
    Case("withdraw-no-ids", lambda w, c: _withdraw(w, []), 422, "validation_error"),
    Case("withdraw-negative-id", lambda w, c: _withdraw(w, [-1]), 422, "validation_error"),
    Case(
        "withdraw-finished-run",
        lambda w, c: _withdraw(w, [c["pending"]]),
        409,
        "run_finished",
        _finish,
    ),
    Case(
        "answer-withdrawn-query",
        lambda w, c: w.answer(c["pending"]),
        410,
        "query_withdrawn",
        lambda w, c: _withdrawn(w, c),
    ),
    Case(
        "batch-answer-withdrawn-query",
        lambda w, c: w.post(
            f"{RUNS}/{w.run_id}/answers",
            "alice",
            {
                "answers": [
                    {"query_id": c["leased"], "class_id": 1},
                    {"query_id": c["pending"], "class_id": 1},
                ]
            },
        ),
        410,
        "query_withdrawn",
        lambda w, c: _withdrawn(w, c),
    ),
    Case(
        "skip-withdrawn-query",
        lambda w, c: w.post(f"{Q}/{c['pending']}/skip", "alice"),
        410,
        "query_withdrawn",
        lambda w, c: _withdrawn(w, c),
    ),
    Case(
        "release-as-trainer",
        lambda w, c: w.post(f"{Q}/release", "trainer", {"ids": [c["leased"]]}),
        403,
        "forbidden",
    ),
    Case(
        "release-unknown-id",
        lambda w, c: w.post(f"{Q}/release", "alice", {"ids": [c["leased"], 999_999]}),
        404,
        "query_not_found",
    ),
    Case(
        "release-no-ids",
        lambda w, c: w.post(f"{Q}/release", "alice", {"ids": []}),
        422,
        "validation_error",
    ),
    Case(
        "release-ids-not-a-list",
        lambda w, c: w.post(f"{Q}/release", "alice", {"ids": "all"}),
        422,
        "validation_error",
    ),
    Case(
        "finish-finished-run",
        lambda w, c: _patch(w, "admin", "finished"),
        409,
        "run_finished",
        _finish,
    ),
    Case(
        "pace-window-too-short",
        lambda w, c: w.get(f"{RUNS}/{w.run_id}/pace?window_s=1", "viewer"),
        422,
        "validation_error",
    ),
]


def _setup(w: World) -> Ctx:
    r = w.ask([(0, 0), (0, 1), (0, 2)])
    assert r.status_code == 201, r.text
    answered, leased, pending = r.json()["ids"]
    assert [q["id"] for q in w.claim("alice", n=1)] == [answered]
    assert w.answer(answered).status_code == 200
    assert [q["id"] for q in w.claim("alice", n=1)] == [leased]
    return {"answered": answered, "leased": leased, "pending": pending}


def snapshot(url: str) -> dict[str, Any]:
    engine = create_engine(url)
    with engine.connect() as conn:
        state: dict[str, Any] = {
            t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one() for t in TABLES
        }
        state["runs_state"] = conn.execute(
            text(
                "SELECT id, status, budget_total, reserved, answered, consumed_cursor "
                "FROM runs ORDER BY id"
            )
        ).all()
        state["queries_state"] = conn.execute(
            text("SELECT id, status, annotator_id, lease_expires_at FROM queries ORDER BY id")
        ).all()
    engine.dispose()
    return state


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_refused_and_changes_nothing(world: World, case: Case) -> None:
    ctx = _setup(world)
    case.prep(world, ctx)
    before = snapshot(world.env.settings.database_url)
    budget = world.budget()
    r = case.act(world, ctx)
    assert r.status_code == case.status, r.text
    assert r.headers["content-type"].startswith("application/json")
    error = r.json()["error"]
    assert error["code"] == case.code, error
    assert isinstance(error["message"], str) and error["message"]
    assert "Traceback" not in r.text
    assert snapshot(world.env.settings.database_url) == before
    assert world.budget() == budget


def test_the_table_is_big_enough() -> None:
    assert len(CASES) >= 20 and len({c.id for c in CASES}) == len(CASES)
