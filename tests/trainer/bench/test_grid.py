"""The smoke benchmark runs every strategy end to end and writes its reports."""

import json

import pytest

from trainer.bench.grid import adaptation_iterations, plan, run_bench
from trainer.bench.presets import PRESETS
from trainer.bench.report import NAMES
from trainer.config import TrainConfig
from trainer.learning.labelbank import LabelBank
from trainer.strategies import BUDGET_FREE, REGION_STRATEGIES, STRATEGIES

PIXEL_ROWS = [s for s in STRATEGIES if s not in REGION_STRATEGIES]


@pytest.mark.slow
def test_smoke_bench_runs_every_strategy(tmp_path) -> None:
    out = tmp_path / "out"
    report = run_bench("smoke", out, tmp_path / "data", workers=1, log=lambda *_: None)
    ran = {r["strategy"] for r in report["results"]}
    assert ran == set(PIXEL_ROWS) == set(PRESETS["smoke"].strategies)
    for r in report["results"]:
        # mIoU: the mean of the per-class IoUs it reports (rounded to 0.01), absent ones left out
        ious = [v for v in r["test_per_class_iou"] if v is not None]
        assert ious and abs(r["test_miou"] - sum(ious) / len(ious)) < 0.01, r["strategy"]
        if r["strategy"] not in BUDGET_FREE:
            assert r["labeled_pixels"] == r["expected_pixels"] == sum(r["spent"].values())
        if STRATEGIES[r["strategy"]].get("selection", "algorithm1") == "algorithm1":
            # what G_h supplied against Algorithm 1's M_e/2, for a user to see
            assert 0 < r["spent_high"] <= r["high_expected"] == r["expected_pixels"] // 2
    saved = json.loads((out / "results.json").read_text())
    assert len(saved["results"]) == len(report["results"])
    tables = (out / "tables.md").read_text()
    assert all(f"| {NAMES.get(s, s)} |" in tables for s in PIXEL_ROWS)
    assert "| full (ADA-MCU) | 1.7% |" in tables  # the label diagnostics table
    assert (out / "miou_vs_budget.png").stat().st_size > 1000
    assert (out / "labels.png").stat().st_size > 1000
    for r in report["results"]:
        assert r["shift"] == "moderate"
        if r["strategy"] in BUDGET_FREE:  # source-only, minent, supervised: nothing asked
            assert r["labels"] is None
        else:  # every label is somewhere, and the diagnostics say where
            d = r["labels"]
            assert 0.0 < d["top10_share"] <= 1.0 and 0.0 <= d["query_error_rate"] <= 1.0
            assert abs(sum(d["label_class_share"]) - 1.0) < 1e-3
            assert d["queries_per_iteration_max"] >= d["queries_per_iteration_mean"] > 0


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
    assert 0 < result["spent_high"] <= result["high_expected"] == result["expected_pixels"] // 2
    ckpt = torch.load(out.with_suffix(".pt"), weights_only=True)  # ours: tensors and plain data
    assert ckpt["config"]["strategy"] == "al-as" and ckpt["config"]["budget_rate"] == 0.01
    bank = LabelBank(1, 1, 1)
    bank.load_state_dict(ckpt["label_bank"])
    assert bank.num_labeled == result["labeled_pixels"]


def test_standard_preset_runs_table_vi_rows_at_the_middle_budget_on_the_default_shift() -> None:
    preset = PRESETS["standard"]
    assert preset.shifts == ("moderate", "hard") and preset.seeds == (0, 1, 2)
    assert preset.budgets == (0.001, 0.005, 0.017) and preset.ablation_budget == 0.005
    runs = {s: plan(preset, TrainConfig(), s) for s in preset.shifts}
    ablation = [c for c in runs["moderate"] if c.strategy == "al-as"]
    assert {c.budget_rate for c in ablation} == {0.005} and len(ablation) == 3
    assert not [c for c in runs["hard"] if c.strategy == "al-as"]
    full = [c for c in runs["hard"] if c.strategy == "full"]
    assert len(full) == 9 and all(c.passes == TrainConfig().passes for c in full)
    # the default schedule (never fewer passes): 16 passes of 16 batches a run
    n = adaptation_iterations(preset)
    adapting = [c for r in runs.values() for c in r if c.strategy != "source-only"]
    assert n["adapt_iterations"] == 256 * len(adapting)


def test_train_command_names_the_fix_for_missing_data(tmp_path, capsys) -> None:
    from stack.cli import main

    assert main(["train", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "r.json")]) == 2
    assert "adamcu generate" in capsys.readouterr().err
