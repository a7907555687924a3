"""scripts/load_bench.py with 1 and then 2 server processes, plus the CPU that PostgreSQL and
Redis spend per answer: the per-request costs docs/scale.md extrapolates from.

Each measured phase of load_bench is bracketed by two snapshots; this script adds, at the same
moments, the CPU seconds of every PostgreSQL process (live backends plus the exited ones the
postmaster reaped) and Redis's ``used_cpu_sys + used_cpu_user``. PostgreSQL and Redis are the
shared ones on 127.0.0.1 (other users' work on them is counted too: the figures are upper
bounds on a shared machine); the load average is reported beside them. Writes
``outputs/scale_bench.json``.

    PYTHONPATH=$PWD .venv/bin/python scripts/scale_bench.py --duration 10 --annotators 32
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT))

import load_bench  # noqa: E402
from load_measure import tree_cpu  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def postmaster_pid() -> int | None:
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmd = (proc / "cmdline").read_bytes().split(b"\0")[0]
            except OSError:
                continue
            if cmd.endswith(b"/postgres") or cmd == b"postgres":
                return int(proc.name)
    return None


def pg_cpu(pid: int | None) -> float:
    """Live PostgreSQL processes' CPU plus the exited children the postmaster reaped."""
    if pid is None:
        return float("nan")
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return tree_cpu(pid) + (int(stat[13]) + int(stat[14])) / TICK


def redis_cpu(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def instrumented(marks: list[tuple[float, float]]):  # noqa: ANN201
    """load_bench's snapshot, also noting PostgreSQL's and Redis's CPU at the same moment."""
    inner, pid, r = (
        load_bench.snapshot,
        postmaster_pid(),
        redis.Redis.from_url(load_bench.REDIS_URL),
    )

    def snap(server_pid: int) -> tuple[float, ...]:
        marks.append((pg_cpu(pid), redis_cpu(r)))
        return inner(server_pid)

    return snap


def per_answer(phase: dict, a: tuple[float, float], b: tuple[float, float]) -> dict:
    n = max(phase["answers"], 1)
    return {
        "pg_cpu_ms_per_answer": round(1000 * (b[0] - a[0]) / n, 3),
        "redis_cpu_ms_per_answer": round(1000 * (b[1] - a[1]) / n, 3),
        "pg_cpu_pct": round(100 * (b[0] - a[0]) / phase["seconds"], 1),
        "redis_cpu_pct": round(100 * (b[1] - a[1]) / phase["seconds"], 1),
    }


def one(args: argparse.Namespace, workers: int) -> dict:
    marks: list[tuple[float, float]] = []
    load_bench.snapshot = instrumented(marks)
    ns = argparse.Namespace(**{**vars(args), "workers": workers, "admin": "scale-bench-admin"})
    result = load_bench.bench(ns)
    for i, phase in enumerate(result["phases"]):
        phase.update(per_answer(phase, marks[2 * i], marks[2 * i + 1]))
    result.pop("server_log_tail", None)
    return result


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--annotators", type=int, default=32)
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--claim-n", type=int, default=10)
    p.add_argument("--batch-n", type=int, default=500)
    p.add_argument("--phases", choices=["both", "single", "batch"], default="both")
    p.add_argument("--images", type=int, default=8)
    p.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    p.add_argument("--out", type=Path, default=ROOT / "outputs" / "scale_bench.json")
    args = p.parse_args(argv)
    base = {k: v for k, v in vars(args).items() if k not in ("processes", "out")}
    base |= {"rate": None, "batch_rate": None, "skip_every": 0, "undo_every": 0}
    runs = {str(n): one(argparse.Namespace(**base), n) for n in args.processes}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(runs, indent=2, default=str) + "\n")
    keys = (
        "phase",
        "answers_per_s",
        "labels_per_s",
        "answer_p50_ms",
        "answer_p99_ms",
        "server_cpu_ms_per_answer",
        "pg_cpu_ms_per_answer",
        "redis_cpu_ms_per_answer",
        "server_cpu_pct",
        "pg_cpu_pct",
        "redis_cpu_pct",
        "machine_busy_pct",
        "loadavg_1m",
    )  # noqa: E501
    for n, result in runs.items():
        for phase in result["phases"]:
            print(f"processes={n}", {k: phase.get(k) for k in keys if k in phase})
        print(f"processes={n} check", result["check"])


if __name__ == "__main__":
    main()
