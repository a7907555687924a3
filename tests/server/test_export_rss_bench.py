"""scripts/export_rss_bench.py runs end to end on a small run and writes what it prints."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_export_rss_bench_measures_and_checks_the_zip(tmp_path: Path) -> None:
    out = tmp_path / "export.json"
    cmd = [sys.executable, str(ROOT / "scripts" / "export_rss_bench.py"), "--images", "3"]
    cmd += ["--width", "64", "--height", "32", "--answers", "5", "--out", str(out)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result == json.loads(done.stdout)
    assert result["entries"] == 4 and result["first_mask_labeled_pixels"] == 5
    assert result["server_peak_rss_mib"] >= result["server_rss_before_mib"] > 0
