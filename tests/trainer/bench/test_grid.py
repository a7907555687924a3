"""The smoke benchmark runs every strategy end to end and writes its reports."""

import json

import pytest

from trainer.bench.grid import PRESETS, run_bench
from trainer.labelbank import LabelBank
from trainer.strategies import BUDGET_FREE, STRATEGIES


@pytest.mark.slow
def test_smoke_bench_runs_every_strategy(tmp_path) -> None:
    out = tmp_path / "out"
    report = run_bench("smoke", out, tmp_path / "data", workers=1, log=lambda *_: None)
    ran = {r["strategy"] for r in report["results"]}
    assert ran == set(STRATEGIES) == set(PRESETS["smoke"].strategies)
    for r in report["results"]:
        assert 0.0 <= r["test_miou"] <= 100.0
        if r["strategy"] not in BUDGET_FREE:
            assert r["labeled_pixels"] == r["expected_pixels"]
    saved = json.loads((out / "results.json").read_text())
    assert len(saved["results"]) == len(report["results"])
    tables = (out / "tables.md").read_text()
    assert all(f"| {s} |" in tables for s in STRATEGIES)
    assert (out / "miou_vs_budget.png").stat().st_size > 1000


@pytest.mark.slow
def test_train_command_writes_result_and_checkpoint_with_config(tmp_path) -> None:
    import torch

    from stack.cli import main
    from trainer.data.synth import generate_benchmark

    data = generate_benchmark(
        tmp_path / "data",
        counts={"source-train": 12, "target-train": 6, "target-val": 4, "target-test": 4},
    )
    cfg = tmp_path / "cfg.toml"
    cfg.write_text("pretrain_iterations = 4\niterations = 4\neval_every = 2\n")
    out = tmp_path / "run.json"
    code = main(
        [
            "train",
            "--config",
            str(cfg),
            "--strategy",
            "al-as",
            "--budget",
            "0.01",
            "--data",
            str(data),
            "--cache",
            str(tmp_path / "cache"),
            "--out",
            str(out),
        ]
    )
    assert code == 0
    result = json.loads(out.read_text())
    assert result["strategy"] == "al-as" and result["labeled_pixels"] == result["expected_pixels"]
    ckpt = torch.load(out.with_suffix(".pt"), weights_only=False)
    assert ckpt["config"]["strategy"] == "al-as" and ckpt["config"]["budget_rate"] == 0.01
    bank = LabelBank(1, 1, 1)
    bank.load_state_dict(ckpt["label_bank"])
    assert bank.num_labeled == result["labeled_pixels"]


def test_train_command_names_the_fix_for_missing_data(tmp_path, capsys) -> None:
    from stack.cli import main

    assert main(["train", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "r.json")]) == 2
    assert "adamcu generate" in capsys.readouterr().err
