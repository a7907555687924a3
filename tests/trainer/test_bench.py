"""The smoke benchmark runs every strategy end to end and writes its reports."""

import json

import pytest

from trainer.bench import PRESETS, run_bench
from trainer.strategies import STRATEGIES


@pytest.mark.slow
def test_smoke_bench_runs_every_strategy(tmp_path) -> None:
    out = tmp_path / "out"
    report = run_bench("smoke", out, tmp_path / "data", workers=1, log=lambda *_: None)
    ran = {r["strategy"] for r in report["results"]}
    assert ran == set(STRATEGIES) == set(PRESETS["smoke"].strategies)
    for r in report["results"]:
        assert 0.0 <= r["test_miou"] <= 100.0
        if r["strategy"] not in ("source-only", "supervised"):
            assert r["labeled_pixels"] == r["expected_pixels"]
    saved = json.loads((out / "results.json").read_text())
    assert len(saved["results"]) == len(report["results"])
    tables = (out / "tables.md").read_text()
    assert all(f"| {s} |" in tables for s in STRATEGIES)
    assert (out / "miou_vs_budget.png").stat().st_size > 1000
