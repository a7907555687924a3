"""Time the main job (``adamcu loop``, what ``bash scripts/run.sh`` runs after its setup check)
and append what it measured to ``docs/measurements/main_job_speed.json`` (its ``runs``).

    .venv/bin/python scripts/main_job_speed.py LABEL [--repo DIR] [--python PY] [--nice 5]

It runs ``PY -m stack loop`` in ``--repo`` (default: this checkout; another checkout of an
older commit compares code, with this venv's ``--python``) under ``nice -n``, and records the
wall time, the CPU time of the job and all its processes (user + sys), the load average
before and after (the machine is shared: CPU time compares better than wall time), whether
pre-training came from the cache, the budget answered and target-test mIoU before -> after
(the job's report), and the adaptation's rate in and after the query window from the
worker's progress lines (one every 10 s).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "docs" / "measurements" / "main_job_speed.json"
LINE = re.compile(r"^(\S+ \S+),\d+ .*progress adapt \S+ (\d+)/(\d+) .*passes ([\d.]+)/([\d.]+)")


def adapt_rates(log: Path, query_passes: float) -> dict[str, float | None]:
    """Iterations per second in the query window (its first ``query_passes`` passes) and
    after it, from the first and last progress lines on each side (10 s apart at most)."""
    points = []
    for line in log.read_text().splitlines():
        m = LINE.match(line)
        if m:
            t = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S").timestamp()
            points.append((t, int(m.group(2)), float(m.group(4))))

    def rate(side: list[tuple[float, int, float]]) -> float | None:
        if len(side) < 2 or side[-1][0] <= side[0][0]:
            return None
        return round((side[-1][1] - side[0][1]) / (side[-1][0] - side[0][0]), 2)

    inside = [p for p in points if p[2] <= query_passes]
    after = [p for p in points if p[2] >= query_passes]
    return {"window_it_per_s": rate(inside), "after_it_per_s": rate(after)}


def commit_of(repo: Path) -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True)
    return out.stdout.decode().strip() or "not a git checkout"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("label")
    p.add_argument("--repo", type=Path, default=ROOT)
    p.add_argument("--python", default=None, help="default: REPO/.venv/bin/python")
    p.add_argument("--nice", type=int, default=5)
    p.add_argument("--query-passes", type=float, default=6.0, help="the worker's (default 6)")
    p.add_argument("--commit", default=None, help="what --repo holds, if not a git checkout")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    a = p.parse_args()
    repo = a.repo.resolve()
    python = a.python or str(repo / ".venv" / "bin" / "python")
    cache = repo / "outputs" / "loop" / "worker" / "cache"
    cached = cache.is_dir() and any(cache.glob("pretrain-*.pt"))
    commit = a.commit or commit_of(repo)  # what runs: the checkout as the job starts
    load_before = os.getloadavg()
    wall = time.perf_counter()
    job = subprocess.run(["nice", "-n", str(a.nice), python, "-m", "stack", "loop"], cwd=repo)
    wall = time.perf_counter() - wall
    load_after = os.getloadavg()
    use = resource.getrusage(resource.RUSAGE_CHILDREN)
    if job.returncode:
        print(f"main_job_speed: the job failed (exit {job.returncode}); nothing written")
        return 1
    report = json.loads((repo / "outputs" / "loop" / "report.json").read_text())
    budget = report["budget"]
    entry = {
        "label": a.label,
        "commit": commit,
        "when": datetime.now().isoformat(timespec="seconds"),
        "command": f"nice -n {a.nice} {python} -m stack loop (in {repo})",
        "pretraining_cached": cached,
        "wall_s": round(wall, 1),
        "cpu_s": round(use.ru_utime + use.ru_stime, 1),
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in load_after],
        "answered": f"{budget['answered']} of {budget['expected']}",
        "test_miou_before": round(report["test_miou_before"], 2),
        "test_miou_after": round(report["test_miou_after"], 2),
        "best_val_miou": round(report["best_val_miou"], 2),
        **adapt_rates(repo / "outputs" / "loop" / "worker.log", a.query_passes),
    }
    doc = json.loads(a.out.read_text()) if a.out.is_file() else {"runs": []}
    doc["runs"].append(entry)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(doc, indent=1) + "\n")
    print(json.dumps(entry))
    return 0


if __name__ == "__main__":
    sys.exit(main())
