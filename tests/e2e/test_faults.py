"""Fault tests with real processes on PostgreSQL + Redis: each asserts nothing lost or doubled.

(a) Redis flushed and restarted mid-run, (b) the server SIGKILLed and restarted, (c) the
trainer SIGKILLed and resumed from its checkpoint, (d) an oracle SIGKILLed holding leases,
(e) 32 annotators for 60 s against a live server fed by a trainer, (f) query batches racing for
the last of the budget. Helpers in ``tests/e2e/procs.py``.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from sqlalchemy import create_engine, text

from client.api import ServiceClient
from tests.e2e.procs import (
    LoadFigures,
    RedisProc,
    Stack,
    assert_nothing_lost_or_doubled,
    drive_annotators,
    prepare_data,
    record,
    wait_until,
)

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
ITERATIONS = 6


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The tiny benchmark and its pre-trained weights, made once for the module."""
    return prepare_data(tmp_path_factory.mktemp("faults-shared"))


@pytest.fixture
def stack(
    tmp_path: Path, shared: tuple[Path, Path], fresh_pg_url: str, redis_url: str
) -> Iterator[Stack]:
    s = Stack(tmp_path / "out", fresh_pg_url, redis_url, *shared)
    try:
        yield s
    finally:
        s.close()


def in_flight(db_url: str, run_id: int) -> bool:
    r = record(db_url, run_id)
    return r["answers"] > 0 and r["status_pending"] + r["status_leased"] > 0


def assert_clean_logs(stack: Stack) -> None:
    worker = (stack.out / "worker.log").read_text()
    assert "duplicate_pixel" not in worker and "Traceback" not in worker, worker[-3000:]
    for name in stack.oracles:
        assert "Traceback" not in stack.log(name), stack.log(name)[-3000:]


def test_redis_flushed_and_restarted_mid_run(
    tmp_path: Path, shared: tuple[Path, Path], fresh_pg_url: str
) -> None:
    redis = RedisProc(tmp_path / "redis")
    redis.start()
    stack = Stack(tmp_path / "out", fresh_pg_url, redis.url, *shared)
    try:
        stack.start_server()
        stack.start_worker(iterations=2 * ITERATIONS)  # queries to post after the restart
        run_id = stack.wait_run()
        for i in range(2):
            stack.start_oracle(f"oracle-{i}", run_id, "--batch", "16", "--delay-ms", "5")
        wait_until(
            lambda: in_flight(fresh_pg_url, run_id), 180, "answers and queries in flight", 0.05
        )
        before = record(fresh_pg_url, run_id)
        redis.flush_and_restart(down_s=1.0)
        restarted = record(fresh_pg_url, run_id)
        summary = stack.wait_worker()
        stack.wait_oracles()
        r = assert_nothing_lost_or_doubled(fresh_pg_url, run_id, summary["labeled_pixels"])
        # the trainer asked, and the oracles answered, after Redis came back
        assert r["queries"] > restarted["queries"], (restarted, r)
        assert r["answers"] > restarted["answers"], (restarted, r)
        # and that work went through a stream and group the dispatcher recreated in the empty
        # Redis (a stream made by a bare XADD would have no group)
        client = redis.client()
        streams = [k.decode() for k in client.keys("*:stream")]
        assert streams, "no stream after the restart"
        groups = [g for k in streams for g in client.xinfo_groups(k)]
        assert any(g["name"] == b"annotators" and g["entries-read"] for g in groups), groups
        assert_clean_logs(stack)
        print(
            f"\n(a) redis flushed with {before['status_pending']} pending + "
            f"{before['status_leased']} leased; final {r}"
        )
    finally:
        stack.close()
        redis.stop()


def test_server_killed_and_restarted_mid_run(stack: Stack, fresh_pg_url: str) -> None:
    stack.start_server()
    stack.start_worker(iterations=ITERATIONS)
    run_id = stack.wait_run()
    for i in range(2):
        stack.start_oracle(f"oracle-{i}", run_id, "--batch", "16", "--delay-ms", "5")
    wait_until(lambda: in_flight(fresh_pg_url, run_id), 180, "answers and queries in flight", 0.05)
    before = record(fresh_pg_url, run_id)
    killed = time.monotonic()
    stack.kill_server()
    time.sleep(2.0)  # a few seconds of downtime: clients meet refused connections
    stack.start_server(migrate=False)
    downtime = time.monotonic() - killed
    summary = stack.wait_worker()
    stack.wait_oracles()
    r = assert_nothing_lost_or_doubled(fresh_pg_url, run_id, summary["labeled_pixels"])
    assert r["answers"] > before["answers"]
    assert_clean_logs(stack)
    logs = [(stack.out / "worker.log").read_text()] + [stack.log(n) for n in stack.oracles]
    retried = sum(text_.count("ConnectError") for text_ in logs)
    assert retried > 0  # the clients did meet the outage and rode it out
    print(
        f"\n(b) server killed with {before['status_pending']} pending + "
        f"{before['status_leased']} leased, down {downtime:.1f} s, {retried} client retries "
        f"on refused connections; final {r}"
    )


def test_trainer_killed_and_resumed(stack: Stack, fresh_pg_url: str) -> None:
    stack.start_server()
    stack.start_worker(iterations=ITERATIONS, checkpoint_every=1)
    run_id = stack.wait_run()
    for i in range(2):
        stack.start_oracle(f"oracle-{i}", run_id, "--batch", "16", "--delay-ms", "20")
    ckpt = stack.worker_dir / "checkpoint.pt"
    wait_until(ckpt.is_file, 180, "the first checkpoint", 0.05)
    wait_until(
        lambda: record(fresh_pg_url, run_id)["status_pending"] > 0, 60, "queries in flight", 0.05
    )
    assert stack.worker is not None
    stack.worker.send_signal(signal.SIGKILL)
    stack.worker.wait(timeout=10)
    before = record(fresh_pg_url, run_id)
    stack.start_worker(iterations=ITERATIONS, checkpoint_every=1)  # same dir: resumes
    summary = stack.wait_worker()
    stack.wait_oracles()
    assert summary["run_id"] == run_id
    log = (stack.out / "worker.log").read_text()
    assert f"resuming run {run_id} at iteration" in log
    r = assert_nothing_lost_or_doubled(fresh_pg_url, run_id, summary["labeled_pixels"])
    assert r["queries"] > before["queries"]  # the resumed trainer asked more
    assert_clean_logs(stack)
    print(
        f"\n(c) trainer killed with {before['queries']} queries "
        f"({before['status_pending'] + before['status_leased']} in flight); final {r}"
    )


def test_oracle_killed_holding_leases(stack: Stack, fresh_pg_url: str) -> None:
    stack.start_server()
    stack.start_worker(iterations=ITERATIONS)
    run_id = stack.wait_run()
    victim = stack.start_oracle(
        "victim", run_id, "--lease", "5", "--batch", "16", "--delay-ms", "150"
    )
    survivor = stack.start_oracle("survivor", run_id, "--lease", "5", "--batch", "16")
    engine = create_engine(fresh_pg_url)
    held_sql = text(
        "SELECT q.id FROM queries q JOIN tokens t ON t.id = q.annotator_id "
        "WHERE t.name = 'victim' AND q.status = 'leased' AND q.run_id = :r"
    )
    try:

        def held() -> list[int]:
            with engine.connect() as c:
                return list(c.execute(held_sql, {"r": run_id}).scalars())

        wait_until(held, 180, "the victim oracle to hold leases", 0.05)
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=10)
        orphans = held()
        assert orphans, "the victim answered its batch before the kill"
        summary = stack.wait_worker()
        stack.wait_oracles(names=["survivor"])
        assert survivor.returncode == 0
        r = assert_nothing_lost_or_doubled(fresh_pg_url, run_id, summary["labeled_pixels"])
        with engine.connect() as c:
            rows = c.execute(
                text(
                    "SELECT q.id, q.status, count(a.id) AS n, min(t.name) AS who FROM queries q "
                    "LEFT JOIN answers a ON a.query_id = q.id "
                    "LEFT JOIN tokens t ON t.id = a.annotator_id "
                    "WHERE q.id = ANY(:ids) GROUP BY q.id, q.status"
                ),
                {"ids": orphans},
            ).all()
    finally:
        engine.dispose()
    for row in rows:  # each orphaned lease expired and was settled once by the survivor
        assert row.status in ("answered", "skipped"), row
        assert row.n == (1 if row.status == "answered" else 0), row
        if row.n:
            assert row.who == "survivor", row
    assert "Traceback" not in stack.log("survivor")
    print(
        f"\n(d) oracle killed holding {len(orphans)} leases; all settled by the survivor; final {r}"
    )


def _make_run(client: ServiceClient, images: int, budget_rate: float) -> tuple[int, list[int]]:
    classes = [{"id": i, "name": f"c{i}", "color": [i, i, i]} for i in range(3)]
    run = client.create_run(
        "faults", classes, target_pixels=images * 64 * 128, budget_rate=budget_rate
    )
    ids = client.register_images(
        run["id"], [(f"t/{i:03d}", np.zeros((64, 128, 3), np.uint8)) for i in range(images)]
    )
    return int(run["id"]), sorted(ids.values())


def _pixels(image_ids: list[int], start: int, n: int) -> list[dict]:
    """``n`` distinct pixels, the ``start``-th onwards of a fixed enumeration."""
    out = []
    for k in range(start, start + n):
        img, rest = divmod(k, 64 * 128)
        y, x = divmod(rest, 128)
        out.append({"image_id": image_ids[img], "y": y, "x": x, "group": "high", "score": 0.5})
    return out


def test_32_annotators_for_60_seconds(stack: Stack, fresh_pg_url: str) -> None:
    seconds = float(os.environ.get("ADAMCU_LOAD_SECONDS", "60"))
    stack.start_server()
    feeder_token = stack.token("trainer", "feeder")
    trainer = ServiceClient(stack.url, feeder_token)
    run_id, image_ids = _make_run(trainer, 16, 1.0)
    tokens = [stack.token("annotator", f"a{i:02d}") for i in range(32)]
    figs = LoadFigures()
    fed = {"queries": 0, "batches": 0}

    async def feed(stop: asyncio.Event) -> None:
        """The trainer: keeps ~1000 pixels pending, posting batches of 200."""
        async with httpx.AsyncClient(
            base_url=f"{stack.url}/api/v1",
            timeout=60,
            headers={"Authorization": f"Bearer {feeder_token}"},
        ) as c:
            while not stop.is_set():
                b = (await c.get(f"/runs/{run_id}/budget")).json()
                if b["reserved"] < 1000:
                    r = await c.post(
                        f"/runs/{run_id}/queries",
                        json={"queries": _pixels(image_ids, fed["queries"], 200)},
                    )
                    assert r.status_code == 201, r.text
                    fed["queries"] += 200
                    fed["batches"] += 1
                else:
                    await asyncio.sleep(0.1)

    async def main() -> float:
        stop = asyncio.Event()
        feeder = asyncio.create_task(feed(stop))
        t0 = time.monotonic()
        await drive_annotators(stack.url, tokens, run_id, seconds, figs)
        took = time.monotonic() - t0
        stop.set()
        await feeder
        return took

    took = asyncio.run(main())
    trainer.close()
    r = assert_nothing_lost_or_doubled(fresh_pg_url, run_id, finished=False)
    engine = create_engine(fresh_pg_url)
    with engine.connect() as c:
        stored = set(
            c.execute(
                text("SELECT query_id FROM answers WHERE run_id = :r"), {"r": run_id}
            ).scalars()
        )
        live_leases = c.execute(
            text(
                "SELECT count(*) FROM queries WHERE run_id = :r AND status = 'leased' "
                "AND lease_expires_at > now() AT TIME ZONE 'utc'"
            ),
            {"r": run_id},
        ).scalar_one()
    engine.dispose()
    lost = len(figs.acked - stored)  # acknowledged but not stored
    unacked = len(stored - figs.acked)  # stored but never acknowledged (a lost response)
    doubled = r["answers"] - r["answered_queries_in_answers"]
    out = {
        "annotators": 32,
        "seconds": round(took, 1),
        "answers": r["answers"],
        "answers_per_s": round(r["answers"] / took, 1),
        "acknowledged": len(figs.acked),
        "lost": lost,
        "doubled": doubled,
        "stored_unacknowledged": unacked,
        "refused": figs.refused,
        "errors": figs.errors,
        "requests": figs.requests,
        "queries_fed": fed["queries"],
        "still_pending": r["status_pending"],
        "still_leased": r["status_leased"],
    }
    (ROOT / "outputs" / "faults").mkdir(parents=True, exist_ok=True)
    (ROOT / "outputs" / "faults" / "load60.json").write_text(json.dumps(out, indent=1))
    print(f"\n(e) {json.dumps(out)}")
    assert lost == 0 and doubled == 0 and unacked == 0 and figs.errors == 0, out
    assert live_leases == 0, out  # every claimed batch was answered before the driver stopped
    assert r["answers"] == len(figs.acked) > 0


def test_query_batches_race_for_the_last_of_the_budget(stack: Stack, fresh_pg_url: str) -> None:
    stack.server_workers = 2  # two server processes on one database
    stack.start_server()
    token = stack.token("trainer", "racer")
    trainer = ServiceClient(stack.url, token)
    run_id, image_ids = _make_run(trainer, 4, 0.01)  # budget = floor(0.01 * 32768) = 327
    total = int(trainer.get_run(run_id)["budget_total"])
    used = total - 100
    trainer.post_queries(run_id, _pixels(image_ids, 0, used))
    cursor = used
    rounds = []
    for size in (30, 3, 1):  # 100 left: 3 x 30 fit; 10 left: 3 x 3; 1 left: 1 x 1
        racers = 8
        batches = [_pixels(image_ids, cursor + k * size, size) for k in range(racers)]
        cursor += racers * size
        barrier = threading.Barrier(racers)
        results: list[int] = [0] * racers

        def race(
            k: int,
            batches: list[list[dict]] = batches,
            barrier: threading.Barrier = barrier,
            results: list[int] = results,
        ) -> None:
            with httpx.Client(
                base_url=f"{stack.url}/api/v1",
                timeout=60,
                headers={"Authorization": f"Bearer {token}"},
            ) as c:
                c.get("/me")  # connect before the start line
                barrier.wait()
                r = c.post(f"/runs/{run_id}/queries", json={"queries": batches[k]})
            results[k] = r.status_code
            if r.status_code == 409:
                assert r.json()["error"]["code"] == "budget_exceeded", r.text

        threads = [threading.Thread(target=race, args=(k,)) for k in range(racers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        left = total - used
        accepted = [k for k in range(racers) if results[k] == 201]
        assert all(code in (201, 409) for code in results), results
        assert len(accepted) == min(racers, left // size), (size, left, results)
        used += len(accepted) * size
        rounds.append(
            {
                "size": size,
                "left_before": left,
                "accepted": len(accepted),
                "refused": racers - len(accepted),
            }
        )
        # refused batches stored nothing; accepted ones stored all
        engine = create_engine(fresh_pg_url)
        with engine.connect() as c:
            stored = {
                (row.image_id, row.y, row.x)
                for row in c.execute(
                    text("SELECT image_id, y, x FROM queries WHERE run_id = :r"), {"r": run_id}
                )
            }
        engine.dispose()
        for k in range(racers):
            inside = sum((p["image_id"], p["y"], p["x"]) in stored for p in batches[k])
            assert inside == (size if k in accepted else 0), (k, inside, results)
    b = trainer.budget(run_id)
    trainer.close()
    r = record(fresh_pg_url, run_id)
    assert r["queries"] == r["run_reserved"] == b["reserved"] == used == total, (r, b)
    assert b["remaining"] == 0
    print(f"\n(f) budget {total}: rounds {rounds}; reserved {r['run_reserved']}")
