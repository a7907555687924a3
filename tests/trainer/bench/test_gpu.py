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


def test_model_lists_every_network_and_refuses_another(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from trainer.nets.catalog import MODEL_NAMES

    with pytest.raises(SystemExit):
        cli_main(["gpu-bench", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert all(name in text for name in MODEL_NAMES)
    with pytest.raises(SystemExit):
        cli_main(["gpu-bench", "--model", "resnet9000", "--out", str(tmp_path / "x.json")])
    assert "unknown model 'resnet9000'; choose one of small" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()


@pytest.mark.parametrize("model", ["convnext_atto_mlp", "pvt_v2_b0_mlp", "dinov2_s14_mlp"])
def test_the_timm_networks_run_the_bench(tmp_path: Path, model: str) -> None:
    out = tmp_path / "bench.json"
    args = ["gpu-bench", "--device", "cpu", "--height", "32", "--width", "64", "--model", model]
    args += ["--iterations", "1", "--warmup", "0", "--settings", "fp32", "--out", str(out)]
    assert cli_main(args + ["--threads", "1"]) == 0
    (row,) = json.loads(out.read_text())["results"]
    assert row["full_seconds"] > 0 and row["ce_seconds"] > 0 and "error" not in row


FIELDS = (
    "ce_seconds",
    "full_seconds",
    "ratio",
    "parts",
    "ce_peak_mib",
    "full_peak_mib",
    "ce_reserved_mib",
    "full_reserved_mib",
    "syncs_per_step",
    "syncs_per_quiet_step",
)


def test_cli_reports_every_field_per_setting(tmp_path: Path) -> None:
    """``adamcu gpu-bench --device cpu --height 32 --width 64 --model small --iterations 2``:
    CE and ADA-MCU s/it, ratio, the parts, both peaks (None off CUDA) and the host syncs."""
    out = tmp_path / "bench.json"
    args = ["gpu-bench", "--device", "cpu", "--height", "32", "--width", "64"]
    args += ["--model", "small", "--iterations", "2", "--settings", "fp32", "--out", str(out)]
    assert cli_main(args + ["--threads", "1"]) == 0
    (row,) = json.loads(out.read_text())["results"]
    assert set(FIELDS) <= set(row), set(FIELDS) - set(row)
    assert set(row["parts"]) == {"scoring", "selection", "seg_losses", "mcu", "backward"}
    assert 0.5 < sum(row["parts"].values()) <= 1.0 + 1e-9  # the rest: forward
    assert row["ratio"] == pytest.approx(row["full_seconds"] / row["ce_seconds"])
    assert row["ce_reserved_mib"] is None and row["full_peak_mib"] is None
    # the counted syncs: the oracle's in a querying step, none after the query window
    assert 1 <= row["syncs_per_step"] <= 4 and row["syncs_per_quiet_step"] == 0


def test_speed_reports_aten_ops(tmp_path: Path) -> None:
    from trainer.bench.gpu_args import StepShape
    from trainer.bench.speed import run_speed
    from trainer.config import TrainConfig

    lines: list[str] = []
    base = TrainConfig(model="small", device="cpu")
    result = run_speed(tmp_path / "speed.json", base, StepShape(32, 64, 9), 1, lines.append)
    assert result["full_aten_ops"] > result["ce_aten_ops"] > 0
    assert "aten ops per step" in lines[0] and json.loads((tmp_path / "speed.json").read_text())
