"""A crowded, hostile day (issue 15): cold tokens at once, bounded work per request, finished
runs, exports that a spreadsheet or an unzip cannot be tricked by, and 32 annotators on the
default SQLite server (throughput: scripts/sqlite_bench.py, see docs/deploy.md)."""

from __future__ import annotations

import csv
import io
import json
import statistics
import subprocess
import sys
import threading
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests.server.conftest import World
from tests.server.test_bad_input import _png_header

ROOT = Path(__file__).resolve().parents[2]


def _tokens(world: World, n: int) -> list[str]:
    out = []
    for i in range(n):
        r = world.post("/api/v1/tokens", "admin", {"role": "viewer", "name": f"cold-{i}"})
        assert r.status_code == 201, r.text
        out.append(r.json()["token"])
    return out


def test_cold_tokens_at_once_are_all_answered_quickly(world: World) -> None:
    """24 tokens the server has never seen read the budget at the same moment (a restart
    with clients reconnecting): every one is answered, all within 5 s (the old server held
    the SQLite write lock across a thread hop and froze for ~30 s)."""
    tokens = _tokens(world, 24)
    client, path = world.env.client, f"/api/v1/runs/{world.run_id}/budget"
    start = threading.Barrier(len(tokens))

    def read(token: str) -> tuple[int, float]:
        start.wait()
        t0 = time.perf_counter()
        r = client.get(path, headers={"Authorization": f"Bearer {token}"})
        return r.status_code, time.perf_counter() - t0

    with ThreadPoolExecutor(len(tokens)) as pool:
        done = list(pool.map(read, tokens))
    assert [s for s, _ in done] == [200] * len(tokens)
    assert max(t for _, t in done) < 5.0, sorted(t for _, t in done)


def test_crop_and_bomb_are_refused_at_once_while_health_stays_fast(world: World) -> None:
    """The crop that took 24 s and 7.5 GB, and a 16384x16384 PNG, are refused with JSON in
    well under a second each; /health keeps answering meanwhile."""
    client = world.env.client
    crop = f"/api/v1/images/{world.image_id}.png?cx=2&cy=2&r=512&scale=32"
    bomb = {"key": "bomb", "width": 16384, "height": 16384, "png_base64": _png_header(16384, 16384)}
    stop = threading.Event()
    health: list[float] = []

    def probe() -> None:
        while not stop.is_set():
            t0 = time.perf_counter()
            assert client.get("/health").status_code == 200
            health.append(time.perf_counter() - t0)

    prober = threading.Thread(target=probe)
    prober.start()
    try:
        for _ in range(3):
            t0 = time.perf_counter()
            r = world.get(crop, "viewer")
            assert time.perf_counter() - t0 < 1.0
            assert r.status_code == 422 and r.json()["error"]["code"] == "crop_too_large"
            assert "1056" in r.json()["error"]["message"]  # names the limit
            t0 = time.perf_counter()
            r = world.post(f"/api/v1/runs/{world.run_id}/images", "trainer", {"images": [bomb]})
            assert time.perf_counter() - t0 < 1.0
            assert r.status_code == 413 and r.json()["error"]["code"] == "image_too_large"
    finally:
        stop.set()
        prober.join()
    assert health and statistics.median(health) < 0.1, sorted(health)[-5:]


def test_a_crop_at_the_limit_works(world: World) -> None:
    r = world.get(f"/api/v1/images/{world.image_id}.png?cx=7&cy=3&r=16&scale=32", "viewer")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"


def test_finishing_a_run_releases_its_reservations(world: World) -> None:
    ids = world.ask([(1, x) for x in range(5)]).json()["ids"]
    held = world.claim("alice", n=2)
    assert world.answer(held[0]["id"]).status_code == 200
    r = world.env.client.patch(
        f"/api/v1/runs/{world.run_id}", json={"status": "finished"}, headers=world.h("trainer")
    )
    assert r.status_code == 200 and r.json()["status"] == "finished"
    b = world.budget()
    assert (b["reserved"], b["answered"], b["skipped"], b["released"]) == (0, 1, 0, 4)
    claim = world.post(f"/api/v1/runs/{world.run_id}/claims", "bob", {"n": 5})
    assert claim.status_code == 409 and claim.json()["error"]["code"] == "run_finished"
    late = world.answer(held[1]["id"])
    assert late.status_code == 409 and late.json()["error"]["code"] == "run_finished"
    page = world.get(f"/api/v1/runs/{world.run_id}/queries", "trainer").json()["queries"]
    assert {q["id"]: q["status"] for q in page if q["id"] in ids} == {
        ids[0]: "answered",
        **{i: "skipped" for i in ids[1:]},
    }
    queue = world.env.client.app.state.queue
    if hasattr(queue, "r"):  # Redis: the released queries' entries are gone
        stream, entries, _, _ = queue._keys(world.run_id)
        assert queue.r.xlen(stream) == 0 and queue.r.hlen(entries) == 0
    # an admin may reopen it; the released queries stay skipped, new ones can be asked
    r = world.env.client.patch(
        f"/api/v1/runs/{world.run_id}", json={"status": "active"}, headers=world.h("admin")
    )
    assert r.status_code == 200 and r.json()["status"] == "active"
    assert world.ask([(2, 0)]).status_code == 201
    assert [q["status"] for q in world.claim("bob", n=5)] == ["leased"]


def test_csv_export_defuses_formulas_and_zip_names_stay_inside(world: World) -> None:
    trainer = world.tokens["trainer"]
    evil = world.post(
        "/api/v1/tokens", "admin", {"role": "annotator", "name": "=cmd|' /C calc'!A0"}
    )
    world.tokens["evil"] = evil.json()["token"]
    from tests.server.conftest import png_b64

    key = '=HYPERLINK("x.example/leak","open me")'
    r = world.post(
        f"/api/v1/runs/{world.run_id}/images",
        "trainer",
        {"images": [{"key": key, "width": 8, "height": 4, "png_base64": png_b64(8, 4, 1)}]},
    )
    assert r.status_code == 201, r.text
    image_id = r.json()["images"][0]["id"]
    queries = [{"image_id": image_id, "y": 0, "x": 0}, {"image_id": world.image_id, "y": 3, "x": 3}]
    r = world.post(f"/api/v1/runs/{world.run_id}/queries", "trainer", {"queries": queries})
    assert r.status_code == 201, r.text
    for q in world.claim("evil", n=2):
        assert world.answer(q["id"], "evil").status_code == 200
    assert trainer
    out = world.get(f"/api/v1/runs/{world.run_id}/export?format=csv", "viewer").text
    rows = list(csv.DictReader(io.StringIO(out)))
    assert {r["image_key"] for r in rows} == {"'" + key, "tgt/000001"}
    assert {r["annotator"] for r in rows} == {"'=cmd|' /C calc'!A0"}
    # a key stored before keys were checked (written straight into the database) never
    # becomes a zip entry name
    engine = create_engine(world.env.settings.database_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE images SET key = '../../evil' WHERE id = :i"), {"i": image_id})
    engine.dispose()
    data = world.get(f"/api/v1/runs/{world.run_id}/export/masks.zip", "viewer").content
    names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    expected = [
        "tgt/labels/000001.png",
        f"unsafe-keys/image-{image_id}.png",
        "classes.json",
    ]
    assert sorted(names) == sorted(expected)


def test_tokens_are_listed_and_revoked_by_an_admin(world: World) -> None:
    r = world.post(
        "/api/v1/tokens", "admin", {"role": "viewer", "name": "temp", "expires_in_seconds": 3600}
    )
    assert r.status_code == 201 and r.json()["expires_at"], r.text
    tid, raw = r.json()["id"], r.json()["token"]
    listed = world.get("/api/v1/tokens", "admin").json()["tokens"]
    mine = next(t for t in listed if t["id"] == tid)
    assert mine["name"] == "temp" and mine["revoked_at"] is None and mine["expires_at"]
    assert all("token" not in t and "token_hash" not in t for t in listed)
    headers = {"Authorization": f"Bearer {raw}"}
    assert world.env.client.get("/api/v1/me", headers=headers).status_code == 200
    r = world.env.client.delete(f"/api/v1/tokens/{tid}", headers=world.h("admin"))
    assert r.status_code == 200 and r.json()["revoked_at"]
    gone = world.env.client.get("/api/v1/me", headers=headers)  # the cache forgot it at once
    assert gone.status_code == 401 and "revoked" in gone.json()["error"]["message"]
    again = world.env.client.delete(f"/api/v1/tokens/{tid}", headers=world.h("admin"))
    assert again.json()["revoked_at"] == r.json()["revoked_at"]  # idempotent


@pytest.mark.slow
def test_16_annotators_skipping_and_undoing_on_the_default_sqlite_server(tmp_path: Path) -> None:
    """16 closed-loop annotators with cold tokens for 20 s against ``adamcu-server`` with its
    defaults, labeling as the UI does: one query in five skipped (Space), one answer in twenty
    undone and answered again (Backspace). No 5xx (no error at all), nothing lost or doubled,
    the skipped queries exactly those whose skip got 200, the budget consistent. (Before issue
    22 the skips froze the server: 33 answers and 16 x 503 in 15 s, worst 20 s.) The answers/s
    and the worst latency are the benchmark's (docs/deploy.md); this asserts a generous floor."""
    out = tmp_path / "crowd.json"
    cmd = [
        sys.executable,
        str(ROOT / "scripts" / "sqlite_bench.py"),
        *("--annotators", "16", "--duration", "20", "--warmup", "1"),
        *("--skip-every", "5", "--undo-every", "20", "--out", str(out)),
    ]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(out.read_text())
    check = result["check"]
    assert check["lost"] == 0 and check["doubled"] == 0 and check["consistent"], check
    (single,) = result["phases"]
    assert not single["errors"] and single["server_errors"] == 0, single["errors"]
    assert single["skips"] > 0 and single["undos"] > 0, single
    assert single["answers_per_s"] >= 20, single


def _annotators(world: World, n: int) -> list[dict[str, str]]:
    out = []
    for i in range(n):
        r = world.post("/api/v1/tokens", "admin", {"role": "annotator", "name": f"crowd-{i}"})
        assert r.status_code == 201, r.text
        out.append({"Authorization": f"Bearer {r.json()['token']}"})
    return out


def _at_once(calls: list) -> list:
    """Run the zero-argument ``calls`` in threads released at the same moment."""
    start = threading.Barrier(len(calls))

    def go(call):
        start.wait()
        return call()

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(go, calls))


def _statuses(world: World, ids: list[int]) -> dict[int, str]:
    page = world.get(f"/api/v1/runs/{world.run_id}/queries", "trainer").json()["queries"]
    return {q["id"]: q["status"] for q in page if q["id"] in ids}


def test_a_crowd_of_skips_and_undos_all_land_and_a_503_changes_nothing(world_factory) -> None:
    """Issue 22, item 1: 16 annotators skipping at once on SQLite took 10 s and 7 got 503,
    one of them for a skip that was committed (the route read the row again after its commit,
    in a write transaction of its own that held the lock while every worker thread waited for
    it). Now: every skip and undo of the crowd is answered quickly; a 503, if any, changed
    nothing, and the database holds exactly the skips, undos and finished runs that got 200.
    Four trainers finish runs (PATCH) meanwhile, which read the run again the same way."""
    world = world_factory(budget_total=40)
    client, crowd = world.env.client, _annotators(world, 16)
    ids = world.ask([(y, x) for y in range(4) for x in range(8)]).json()["ids"]
    mine: list[list[int]] = []
    for h in crowd:
        r = client.post(f"/api/v1/runs/{world.run_id}/claims", json={"n": 2}, headers=h)
        mine.append([q["id"] for q in r.json()["queries"]])
    for h, (_, done) in zip(crowd, mine, strict=True):
        r = client.post(f"/api/v1/queries/{done}/answer", json={"class_id": 1}, headers=h)
        assert r.status_code == 200, r.text

    def timed(path: str, h: dict[str, str]):
        def call() -> tuple[int, float]:
            t0 = time.perf_counter()
            return client.post(path, headers=h).status_code, time.perf_counter() - t0

        return call

    others = [world_factory(budget_total=40).run_id for _ in range(4)]

    def finish(run_id: int):
        def call() -> tuple[int, float]:
            t0 = time.perf_counter()
            r = client.patch(
                f"/api/v1/runs/{run_id}", json={"status": "finished"}, headers=world.h("trainer")
            )
            return r.status_code, time.perf_counter() - t0

        return call

    calls = [timed(f"/api/v1/queries/{q}/skip", h) for h, (q, _) in zip(crowd, mine, strict=True)]
    calls += [timed(f"/api/v1/queries/{q}/undo", h) for h, (_, q) in zip(crowd, mine, strict=True)]
    done = _at_once(calls + [finish(r) for r in others])
    states = _statuses(world, ids)
    skips, undos, patches = done[:16], done[16:32], done[32:]
    for (status, _), run_id in zip(patches, others, strict=True):
        assert status in (200, 503), status
        got = world.get(f"/api/v1/runs/{run_id}", "viewer").json()["status"]
        assert got == ("finished" if status == 200 else "active"), (status, got)
    for (status, _), (q, _) in zip(skips, mine, strict=True):
        assert status in (200, 503), status
        assert states[q] == ("skipped" if status == 200 else "leased"), (status, states[q])
    for (status, _), (_, q) in zip(undos, mine, strict=True):
        assert status in (200, 503), status
        assert states[q] == ("leased" if status == 200 else "answered"), (status, states[q])
    b = world.budget()
    assert b["skipped"] == sum(s == 200 for s, _ in skips)
    assert b["answered"] == sum(s == 503 for s, _ in undos)
    assert b["reserved"] == 32 - b["skipped"] - b["answered"]
    assert [s for s, _ in done] == [200] * 36, done  # and under this crowd, none is refused
    assert max(t for _, t in done) < 5.0, sorted(t for _, t in done)[-5:]
