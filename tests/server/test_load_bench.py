"""scripts/load_bench.py against a live server on PostgreSQL + Redis: nothing lost or doubled."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_load_bench_loses_and_doubles_nothing(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    cmd = [
        sys.executable,
        str(ROOT / "scripts" / "load_bench.py"),
        "--annotators",
        "4",
        "--duration",
        "2.5",
        "--warmup",
        "0.5",
        "--workers",
        "1",
        "--batch-n",
        "50",
        "--images",
        "1",
        "--out",
        str(out),
    ]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(out.read_text())
    check = result["check"]
    assert check["lost"] == 0 and check["doubled"] == 0 and check["consistent"], check
    single, batch = result["phases"]
    assert single["answers"] > 0 and batch["answers"] > 0
    assert not single["errors"] and not batch["errors"]


@pytest.mark.slow
def test_paced_mode_holds_the_annotators_to_the_rate(tmp_path: Path) -> None:
    """--rate paces the annotators: never more answers than the schedule allows (one per slot
    and annotator; the slots of the window plus one per annotator at its edge)."""
    out = tmp_path / "paced.json"
    rate, duration, annotators = 40.0, 2.5, 4
    cmd = [
        sys.executable,
        str(ROOT / "scripts" / "load_bench.py"),
        "--annotators",
        str(annotators),
        "--duration",
        str(duration),
        "--warmup",
        "0.5",
        "--workers",
        "1",
        "--phases",
        "single",
        "--rate",
        str(rate),
        "--images",
        "1",
        "--out",
        str(out),
    ]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(out.read_text())
    (single,) = result["phases"]
    assert single["paced_rate"] == rate and not single["errors"]
    assert 0 < single["answers"] <= rate * single["seconds"] + annotators
    check = result["check"]
    assert check["lost"] == 0 and check["doubled"] == 0 and check["consistent"], check
