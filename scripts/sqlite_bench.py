"""Load benchmark of the default server (SQLite, embedded queue) under a crowd of annotators.

The annotators, the trainer and the phases are those of ``scripts/load_bench.py`` (read that
file's docstring); this script only swaps its backend: a fresh SQLite file migrated with
``python -m server.migrate``, one ``python -m server.main`` process with its default settings
(no Redis), and a check of the file afterwards (nothing lost or doubled, the budget counters
match the rows). Every annotator's token is cold when the crowd starts (a restart with many
clients reconnecting looks the same).

    .venv/bin/python scripts/sqlite_bench.py --annotators 32 --duration 20 --out sqlite.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import secrets
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from stack.processes import free_port, wait_ready  # noqa: E402


def _load_bench():
    spec = importlib.util.spec_from_file_location("load_bench", ROOT / "scripts" / "load_bench.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["load_bench"] = module
    spec.loader.exec_module(module)
    return module


lb = _load_bench()


def verify(path: Path, sh) -> dict:
    """The checks of load_bench.verify, on the SQLite file."""
    with sqlite3.connect(path) as conn:
        per_query = dict(
            conn.execute(
                "SELECT query_id, count(*) FROM answers WHERE run_id = ? GROUP BY query_id",
                (sh.run_id,),
            ).fetchall()
        )
        status = dict(
            conn.execute(
                "SELECT status, count(*) FROM queries WHERE run_id = ? GROUP BY status",
                (sh.run_id,),
            ).fetchall()
        )
        reserved, answered = conn.execute(
            "SELECT reserved, answered FROM runs WHERE id = ?", (sh.run_id,)
        ).fetchone()
    return lb.verdict(sh, per_query, status, answered, reserved)


async def drive(args: argparse.Namespace, base: str, db_path: Path, pid: int) -> dict:
    sh, tokens = lb.setup_run(base, args.admin, args.annotators, args.images)
    sh.skip_every, sh.undo_every = args.skip_every, args.undo_every
    phases = []
    for batch in (False, True):
        if (args.phases == "single" and batch) or (args.phases == "batch" and not batch):
            continue
        phases.append(await lb.run_phase(sh, args, tokens, batch, pid))
    return {"phases": phases, "check": verify(db_path, sh)}


def bench(args: argparse.Namespace) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="sqlite_bench_"))
    db_path = tmp / "adamcu.db"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "ADAMCU_DATABASE_URL": f"sqlite:///{db_path}",
        "ADAMCU_ADMIN_TOKEN": args.admin,
        "ADAMCU_ENVIRONMENT": "test",
    }
    env.pop("ADAMCU_REDIS_URL", None)
    env.pop("ADAMCU_THREADS", None)  # the default thread pool is what is measured
    log = tmp / "server.log"
    proc = None
    try:
        subprocess.run([sys.executable, "-m", "server.migrate"], cwd=ROOT, env=env, check=True)
        cmd = [sys.executable, "-m", "server.main", "--port", str(port)]
        with log.open("w") as fh:
            proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT)
        wait_ready(base, proc, log=log)
        result = lb._run_async(drive(args, base, db_path, proc.pid))
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
    result["server_log_tail"] = log.read_text()[-2000:]
    for f in tmp.iterdir():
        f.unlink()
    tmp.rmdir()
    result["config"] = {k: v for k, v in vars(args).items() if k not in ("admin", "out")}
    result["backend"] = "sqlite"
    result["cpus"] = os.cpu_count()
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--annotators", type=int, default=32)
    p.add_argument("--duration", type=float, default=20.0, help="measured seconds per phase")
    p.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds per phase")
    p.add_argument("--claim-n", type=int, default=10, help="claim size in the single phase")
    p.add_argument("--batch-n", type=int, default=500, help="claim size in the batch phase")
    p.add_argument("--rate", type=float, default=None, help="paced single phase (answers/s)")
    p.add_argument("--batch-rate", type=float, default=None, help="paced batch phase (labels/s)")
    lb.add_crowd_options(p, skip_every=5, undo_every=20)  # a crowd labels as the UI does
    p.add_argument("--phases", choices=["both", "single", "batch"], default="single")
    p.add_argument("--images", type=int, default=2, help=f"{lb.SIDE}x{lb.SIDE} images to ask from")
    p.add_argument("--out", type=Path, default=None, help="write the result as JSON here")
    args = p.parse_args(argv)
    args.admin = secrets.token_urlsafe(16)
    result = bench(args)
    print(lb.table(result))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2, default=str))
    chk = result["check"]
    return 0 if chk["lost"] == 0 and chk["doubled"] == 0 and chk["consistent"] else 1


if __name__ == "__main__":
    sys.exit(main())
