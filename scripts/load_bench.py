"""Load benchmark of a live labeling server: N simulated annotators against PostgreSQL + Redis.

Starts ``python -m server.migrate`` and ``python -m server.main`` as subprocesses on a fresh
PostgreSQL database (created, then dropped) and Redis db 10 (flushed, unless it holds keys
the bench did not write; ``ADAMCU_BENCH_REDIS_URL`` picks another), then runs two phases of
``--duration`` seconds each while a trainer token keeps the queue full:

* ``single``: each annotator claims ``--claim-n`` queries and answers them one request each;
* ``batch``: each annotator claims ``--batch-n`` queries and answers them in one request.

By default each annotator sends its next request as soon as the last one came back (closed
loop): that measures the most the server can take, and the latency it gives then is set by the
queue of 32 requests in flight. ``--rate`` / ``--batch-rate`` pace the annotators instead to
an aggregate rate (each one on its own schedule, slots spread at random), which is how people
label; latency is then counted from each request's planned time, so a server that falls behind
is charged for it.

Reports answers/s, labels/s, p50/p99 latency of claims and answers, errors, client and machine
CPU, and checks the database afterwards: every query the client saw answered has exactly one
answer row, none is doubled, and the run's budget counters match the rows. Loopback only; the
client is one asyncio process with a minimal keep-alive HTTP/1.1 client (low per-request cost).

    .venv/bin/python scripts/load_bench.py --annotators 32 --duration 20 --out bench.json
    .venv/bin/python scripts/load_bench.py --annotators 32 --rate 300 --batch-rate 5000
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import random
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import psycopg
import redis
from load_annotators import SIDE, Phase, Shared, add_crowd_options, annotator, trainer
from load_measure import pct, snapshot, table, verdict
from PIL import Image as PILImage

from stack.processes import free_port, wait_ready

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
REDIS_URL = os.environ.get("ADAMCU_BENCH_REDIS_URL", "redis://127.0.0.1:6379/10")
REDIS_MARK = "adamcu:load_bench"  # kept in that db: a db with it (or empty) is the bench's


def claim_redis(url: str = REDIS_URL) -> None:
    """Flush the bench's Redis db, refusing one that holds keys the bench did not write."""
    client = redis.Redis.from_url(url)
    keys = client.dbsize()
    if keys and not client.exists(REDIS_MARK):
        sys.exit(
            f"load_bench: {url} holds {keys} keys it did not write; refusing to flush them. "
            "Set ADAMCU_BENCH_REDIS_URL to an empty Redis database."
        )
    client.flushdb()
    client.set(REDIS_MARK, "1")


CLASSES = [{"id": i, "name": f"c{i}", "color": [i, i, i]} for i in range(4)]


async def run_phase(
    sh: Shared, args: argparse.Namespace, tokens: list[str], batch: bool, server_pid: int
) -> dict:
    ph = Phase("batch" if batch else "single")
    n = args.batch_n if batch else args.claim_n
    rate = args.batch_rate if batch else args.rate  # answers (labels) per second, all together
    per_request = n if batch else 1
    interval = len(tokens) * per_request / rate if rate else None
    low = max(len(tokens) * n * 3, 2000)  # claimed-but-unanswered ones count as posted
    chunk = min(10_000, max(low // 2, 1000))
    sh.stop, sh.measuring = False, False
    tasks = [asyncio.create_task(trainer(sh, low, chunk))]
    while sh.posted - len(sh.answered) - len(sh.skipped) < low:  # filled before they start
        if tasks[0].done():
            tasks[0].result()  # raises the trainer's error
        await asyncio.sleep(0.05)
    gen = random.Random(len(tokens))  # the annotators' slots spread over one interval
    tasks += [
        asyncio.create_task(
            annotator(sh, ph, t, n, batch, interval, gen.random() * (interval or 0))
        )
        for t in tokens
    ]
    await asyncio.sleep(args.warmup)
    load0, a = os.getloadavg()[0], snapshot(server_pid)
    sh.measuring = True
    await asyncio.sleep(args.duration)
    sh.measuring = False
    b, load1 = snapshot(server_pid), os.getloadavg()[0]
    sh.stop = True
    await asyncio.gather(*tasks)
    wall = b[0] - a[0]
    return {
        "phase": ph.name,
        "annotators": len(tokens),
        "claim_n": n,
        "seconds": round(wall, 2),
        "paced_rate": rate or None,
        "answers": ph.answers,
        "answers_per_s" if not batch else "labels_per_s": round(ph.answers / wall, 1),
        "requests_per_s": round(ph.requests / wall, 1),
        "claim_p50_ms": pct(ph.claim_ms, 50),
        "claim_p99_ms": pct(ph.claim_ms, 99),
        "answer_p50_ms": pct(ph.answer_ms, 50),
        "answer_p99_ms": pct(ph.answer_ms, 99),
        "skips": ph.skips,
        "skip_p99_ms": pct(ph.skip_ms, 99),
        "undos": ph.undos,
        "undo_p99_ms": pct(ph.undo_ms, 99),
        "worst_ms": pct(ph.claim_ms + ph.answer_ms + ph.skip_ms + ph.undo_ms, 100),
        "server_errors": sum(n for k, n in ph.errors.items() if k.startswith("5")),
        "errors": ph.errors,
        "empty_claims": ph.empty_claims,
        "client_cpu_pct": round(100 * (b[1] - a[1]) / wall, 1),
        "server_cpu_pct": round(100 * (b[2] - a[2]) / wall, 1),
        "server_cpu_ms_per_answer": round(1000 * (b[2] - a[2]) / max(ph.answers, 1), 3),
        "machine_busy_pct": round(100 * (b[3] - a[3]) / max(b[4] - a[4], 1), 1),
        "loadavg_1m": [round(load0, 2), round(load1, 2)],
    }


def _png(side: int) -> str:
    import base64

    buf = io.BytesIO()
    PILImage.new("L", (side, side)).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def setup_run(base: str, admin: str, annotators: int, images: int) -> tuple[Shared, list[str]]:
    """Tokens, a run with a budget that never runs out, and ``images`` blank images."""
    port = int(base.rsplit(":", 1)[1])
    with httpx.Client(base_url=base, timeout=60) as c:

        def token(role: str, name: str) -> str:
            r = c.post(
                "/api/v1/tokens",
                json={"role": role, "name": name},
                headers={"Authorization": f"Bearer {admin}"},
            )
            r.raise_for_status()
            return r.json()["token"]

        trainer_tok = token("trainer", "bench-trainer")
        ann = [token("annotator", f"bench-{i:03d}") for i in range(annotators)]
        h = {"Authorization": f"Bearer {trainer_tok}"}
        run = c.post(
            "/api/v1/runs",
            headers=h,
            json={
                "name": "load-bench",
                "classes": CLASSES,
                "target_pixels": 10**9,
                "budget_rate": 0.01,
                "strategy": "full",
                "config": {},
            },
        )
        run.raise_for_status()
        run_id = run.json()["id"]
        png = _png(SIDE)
        imgs = [
            {"key": f"bench/{i:04d}", "width": SIDE, "height": SIDE, "png_base64": png}
            for i in range(images)
        ]
        r = c.post(f"/api/v1/runs/{run_id}/images", headers=h, json={"images": imgs})
        r.raise_for_status()
        ids = [im["id"] for im in r.json()["images"]]
    return Shared(port, run_id, ids, trainer_tok), ann


def verify(db_url: str, sh: Shared) -> dict:
    """Every query the client saw answered has exactly one answer row; counters match."""
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT query_id, count(*) FROM answers WHERE run_id = %s GROUP BY query_id",
            (sh.run_id,),
        ).fetchall()
        status = dict(
            conn.execute(
                "SELECT status, count(*) FROM queries WHERE run_id = %s GROUP BY status",
                (sh.run_id,),
            ).fetchall()
        )
        reserved, answered = conn.execute(
            "SELECT reserved, answered FROM runs WHERE id = %s", (sh.run_id,)
        ).fetchone()
    return verdict(sh, dict(rows), status, answered, reserved)


async def drive(args: argparse.Namespace, base: str, db_url: str, pid: int) -> dict:
    sh, tokens = setup_run(base, args.admin, args.annotators, args.images)
    sh.skip_every, sh.undo_every = args.skip_every, args.undo_every
    phases = []
    for batch in (False, True):
        if (args.phases == "single" and batch) or (args.phases == "batch" and not batch):
            continue
        phases.append(await run_phase(sh, args, tokens, batch, pid))
    return {"phases": phases, "check": verify(db_url, sh)}


def _run_async(coro):  # uvloop when installed: less client CPU per request
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def bench(args: argparse.Namespace) -> dict:
    """Fresh database and Redis db, live server, both phases, checks; cleans up after."""
    name = f"adamcu_bench_{secrets.token_hex(4)}"
    db_url = f"postgresql://postgres@127.0.0.1:5432/{name}"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "ADAMCU_DATABASE_URL": db_url.replace("://", "+psycopg://", 1),
        "ADAMCU_REDIS_URL": REDIS_URL,
        "ADAMCU_ADMIN_TOKEN": args.admin,
        "ADAMCU_ENVIRONMENT": "test",
        "ADAMCU_STORE_ROOT": tempfile.mkdtemp(prefix="load_bench_store_"),
    }
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    claim_redis()
    log = Path(tempfile.mkstemp(prefix="load_bench_", suffix=".log")[1])
    proc = None
    try:
        subprocess.run([sys.executable, "-m", "server.migrate"], cwd=ROOT, env=env, check=True)
        cmd = [
            sys.executable,
            "-m",
            "server.main",
            "--port",
            str(port),
            "--workers",
            str(args.workers),
        ]
        with log.open("w") as fh:
            proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT)
        wait_ready(base, proc, log=log)
        result = _run_async(drive(args, base, db_url, proc.pid))
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        claim_redis()  # the run's streams go, the mark stays
    result["server_log_tail"] = log.read_text()[-2000:]
    log.unlink()
    shutil.rmtree(env["ADAMCU_STORE_ROOT"], ignore_errors=True)  # the bench's own temp folder
    result["config"] = {k: v for k, v in vars(args).items() if k not in ("admin", "out")}
    result["cpus"] = os.cpu_count()
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--annotators", type=int, default=32)
    p.add_argument("--duration", type=float, default=20.0, help="measured seconds per phase")
    p.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds per phase")
    p.add_argument("--workers", type=int, default=2, help="server worker processes")
    p.add_argument("--claim-n", type=int, default=10, help="claim size in the single phase")
    p.add_argument("--batch-n", type=int, default=500, help="claim size in the batch phase")
    p.add_argument(
        "--rate",
        type=float,
        default=None,
        help="paced single phase: answers/s from all annotators together, latency "
        "counted from each request's planned time (default: closed loop)",
    )
    p.add_argument(
        "--batch-rate",
        type=float,
        default=None,
        help="paced batch phase: labels/s from all annotators together",
    )
    add_crowd_options(p, skip_every=0, undo_every=0)
    p.add_argument("--phases", choices=["both", "single", "batch"], default="both")
    p.add_argument("--images", type=int, default=8, help=f"{SIDE}x{SIDE} images to ask from")
    p.add_argument("--out", type=Path, default=None, help="write the result as JSON here")
    args = p.parse_args(argv)
    args.admin = secrets.token_urlsafe(16)
    result = bench(args)
    print(table(result))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2, default=str))
    chk = result["check"]
    return 0 if chk["lost"] == 0 and chk["doubled"] == 0 and chk["consistent"] else 1


if __name__ == "__main__":
    sys.exit(main())
