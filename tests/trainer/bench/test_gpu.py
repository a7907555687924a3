"""trainer/bench/gpu.py at a tiny size on the CPU: every setting, the table, the JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from stack.cli import main as cli_main
from trainer.bench.gpu import SETTINGS, main


@pytest.fixture(autouse=True)
def _restore_threads() -> object:
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_tiny_cpu_run_writes_every_setting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bench.json"
    assert (
        main(
            [
                "--device",
                "cpu",
                "--height",
                "32",
                "--width",
                "64",
                "--model",
                "small",
                "--classes",
                "5",
                "--iterations",
                "2",
                "--warmup",
                "1",
                "--threads",
                "1",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    report = json.loads(out.read_text())
    assert [r["setting"] for r in report["results"]] == list(SETTINGS)
    for row in report["results"]:
        assert row["ce_seconds"] > 0 and row["full_seconds"] > 0 and "error" not in row
        assert row["ce_peak_mib"] is None  # peak memory is a CUDA number
    printed = capsys.readouterr().out
    assert "bf16-channels-last" in printed and "written to" in printed


def test_time_budget_skips_and_cli_subcommand(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    assert (
        cli_main(
            [
                "gpu-bench",
                "--device",
                "cpu",
                "--height",
                "16",
                "--width",
                "32",
                "--model",
                "small",
                "--classes",
                "3",
                "--iterations",
                "1",
                "--warmup",
                "0",
                "--settings",
                "fp32,bf16",
                "--max-seconds",
                "0",
                "--threads",
                "1",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    rows = json.loads(out.read_text())["results"]
    assert "ce_seconds" in rows[0] and "skipped" in rows[1]


def test_unknown_setting_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="fp16"):
        main(["--settings", "fp16", "--device", "cpu", "--out", str(tmp_path / "x.json")])
