"""What the load benchmark measures besides its own counters: latency percentiles and CPU time
(the whole machine's, and a process tree's) read from ``/proc``."""

from __future__ import annotations

import os
import time
from pathlib import Path


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
