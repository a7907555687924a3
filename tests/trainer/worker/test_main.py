"""The worker's CLI: the session flags, and the mode picks what runs."""

import json

import pytest

from trainer.worker import main as cli
from trainer.worker.main import parse_args


def test_the_worker_cli_takes_session_flags() -> None:
    cfg, opts = parse_args(["--token", "t", "--mode", "session", "--queue-minutes", "3"])
    assert opts.mode == "session" and opts.session == {"queue_minutes": 3.0}


@pytest.mark.parametrize(
    ("mode", "runs"), [("session", "session"), ("human", "worker"), ("benchmark", "worker")]
)
def test_the_mode_picks_the_loop(mode: str, runs: str, monkeypatch, capsys) -> None:
    seen = []

    def fake(name: str):
        return lambda cfg, opts: seen.append((name, opts.mode)) or {"run_id": 3, "budget": {}}

    monkeypatch.setattr(cli, "run_session", fake("session"))
    monkeypatch.setattr(cli, "run_worker", fake("worker"))
    assert cli.main(["--token", "t", "--mode", mode]) == 0
    assert seen == [(runs, mode)] and json.loads(capsys.readouterr().out) == {"run_id": 3}


def test_a_bad_pace_exits_with_2_and_a_message_before_any_work(capsys) -> None:
    assert cli.main(["--token", "t", "--mode", "session", "--queue-floor", "0"]) == 2
    assert "queue_floor" in capsys.readouterr().err


def test_the_worker_cli_asks_regions_under_a_seconds_budget() -> None:
    argv = ["--token", "t", "--mode", "session", "--strategy", "random"]
    cfg, _ = parse_args([*argv, "--query-kind", "regions", "--budget-seconds-per-image", "4.5"])
    assert cfg.query_kind == "regions" and cfg.budget_seconds_per_image == 4.5
    cfg, _ = parse_args(argv)
    assert cfg.query_kind == "pixels" and cfg.budget_seconds_per_image == 0.0
    with pytest.raises(SystemExit):
        parse_args([*argv, "--query-kind", "superpixels"])


def test_a_region_session_without_a_seconds_budget_stops_before_any_run(tmp_path, capsys) -> None:
    from trainer.data.synth import generate_benchmark

    counts = {"source-train": 2, "target-train": 2, "target-val": 1, "target-test": 1}
    data = generate_benchmark(tmp_path / "data", counts=counts, seed=1)
    argv = ["--token", "t", "--mode", "session", "--data", str(data), "--strategy", "random"]
    argv += ["--query-kind", "regions", "--checkpoint-dir", str(tmp_path / "w")]
    assert cli.main(argv) == 2
    assert "needs a budget in annotator seconds" in capsys.readouterr().err
    assert not (tmp_path / "w").exists()  # stopped before its folder, pre-training and run


@pytest.mark.parametrize("mode", ["benchmark", "human"])
def test_the_benchmark_modes_refuse_regions_and_seconds_before_any_run(
    mode: str, tmp_path, capsys
) -> None:
    argv = ["--token", "t", "--mode", mode, "--checkpoint-dir", str(tmp_path / "w")]
    assert cli.main([*argv, "--budget-seconds-per-image", "2"]) == 2
    assert "run in --mode session" in capsys.readouterr().err
    assert cli.main([*argv, "--strategy", "region-random"]) == 2
    assert not (tmp_path / "w").exists()
