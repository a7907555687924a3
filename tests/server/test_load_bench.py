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
        sys.executable, str(ROOT / "scripts" / "load_bench.py"), "--annotators", "4",
        "--duration", "2.5", "--warmup", "0.5", "--workers", "1", "--batch-n", "50",
        "--images", "1", "--out", str(out),
    ]  # fmt: skip
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(out.read_text())
    check = result["check"]
    assert check["lost"] == 0 and check["doubled"] == 0 and check["consistent"], check
    single, batch = result["phases"]
    assert single["answers"] > 0 and batch["answers"] > 0
    assert not single["errors"] and not batch["errors"]
