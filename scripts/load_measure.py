"""What the load benchmark measures besides its own counters: latency percentiles and CPU time
(the whole machine's, and a process tree's) read from ``/proc``; the check of the database
afterwards (``verdict``) and the printed table of a result."""

from __future__ import annotations

import os
import time
from pathlib import Path

from load_annotators import Shared


def pct(xs: list[float], p: float) -> float | None:
    """The ``p``-th percentile of ``xs`` (nearest rank), in 2 decimals; None for no samples."""
    if not xs:
        return None
    s = sorted(xs)
    return round(s[min(len(s) - 1, int(p / 100 * len(s)))], 2)


def cpu_busy() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine since boot."""
    vals = [float(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    return sum(vals) - vals[3] - vals[4], sum(vals)


def tree_cpu(pid: int) -> float:
    """CPU seconds used by a process and its live descendants."""
    total, todo, tick = 0.0, [pid], os.sysconf("SC_CLK_TCK")
    while todo:
        p = todo.pop()
        try:
            stat = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(stat[11]) + int(stat[12])) / tick
            for task in Path(f"/proc/{p}/task").iterdir():
                todo.extend(int(c) for c in (task / "children").read_text().split())
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def snapshot(server_pid: int) -> tuple[float, ...]:
    busy, total = cpu_busy()
    return time.perf_counter(), time.process_time(), tree_cpu(server_pid), busy, total


def verdict(sh: Shared, per_query: dict, status: dict, answered: int, reserved: int) -> dict:
    """Lost, doubled and unacknowledged answers and the counters' consistency, from the answer
    rows per query, the queries per status and the run's counters (any backend). Consistent
    also means the skipped queries are exactly those whose skip the client saw succeed (a
    503 changed nothing)."""
    answer_rows = sum(per_query.values())
    lost = len(sh.answered - per_query.keys()) + max(status.get("answered", 0) - len(per_query), 0)
    return {
        "client_answered": len(sh.answered),
        "client_skipped": len(sh.skipped),
        "answer_rows": answer_rows,
        "lost": lost,
        "doubled": sum(1 for c in per_query.values() if c > 1),
        "unacknowledged": len(per_query.keys() - sh.answered),
        "budget_answered": answered,
        "budget_reserved": reserved,
        "query_status": status,
        "consistent": answered == answer_rows == status.get("answered", 0) == len(sh.answered)
        and reserved == status.get("pending", 0) + status.get("leased", 0)
        and status.get("skipped", 0) == len(sh.skipped),
    }


def table(result: dict) -> str:
    cols = [
        "phase",
        "annotators",
        "claim_n",
        "paced_rate",
        "answers_per_s",
        "labels_per_s",
        "requests_per_s",
        "claim_p50_ms",
        "claim_p99_ms",
        "answer_p50_ms",
        "answer_p99_ms",
        "skips",
        "skip_p99_ms",
        "undos",
        "undo_p99_ms",
        "worst_ms",
        "server_errors",
        "errors",
        "client_cpu_pct",
        "server_cpu_pct",
        "server_cpu_ms_per_answer",
        "machine_busy_pct",
        "loadavg_1m",
    ]
    lines = []
    for ph in result["phases"]:
        lines += [f"{c:>16}: {ph[c]}" for c in cols if c in ph] + [""]
    lines += [f"{k:>16}: {v}" for k, v in result["check"].items()]
    return "\n".join(lines)
