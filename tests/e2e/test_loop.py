"""The whole loop as real processes: server (uvicorn), trainer worker, two simulated oracles."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from stack.loop import LoopOptions, print_summary, run_loop
from trainer.bench.experiment import run_strategy
from trainer.config import TrainConfig
from trainer.loop.train import load_data
from trainer.strategies import configure

TINY = {"source-train": 40, "target-train": 16, "target-val": 8, "target-test": 8}


def _options(tmp_path: Path, **kw) -> LoopOptions:
    return LoopOptions(
        out=tmp_path / "out",
        data=tmp_path / "data",
        counts=dict(TINY),
        budget=0.01,
        iterations=12,
        pretrain_iterations=20,
        eval_every=6,
        oracles=2,
        timeout=600,
        **kw,
    )


def _check_record(database_url: str, summary: dict) -> None:
    engine = create_engine(database_url)
    with engine.connect() as conn:
        one = lambda sql: conn.execute(text(sql)).scalar_one()  # noqa: E731
        answers = one("SELECT count(*) FROM answers")
        answered_queries = one("SELECT count(DISTINCT query_id) FROM answers")
        queries = one("SELECT count(*) FROM queries")
        distinct_pixels = one(
            "SELECT count(*) FROM (SELECT DISTINCT run_id, image_id, y, x FROM queries) AS d"
        )
        metrics = one("SELECT count(*) FROM metrics")
        status = one("SELECT status FROM runs")
        open_queries = one("SELECT count(*) FROM queries WHERE status IN ('pending', 'leased')")
    engine.dispose()
    budget = summary["budget"]
    # budget spent = answers stored = labels in the worker's bank
    assert budget["answered"] == answers == answered_queries == summary["labeled_pixels"] > 0
    assert budget["answered"] <= budget["expected"]
    assert queries == distinct_pixels  # no pixel asked twice
    assert metrics >= 2  # one per evaluation
    assert status == "finished" and open_queries == 0 and budget["reserved"] == 0


@pytest.mark.slow
def test_loop_sqlite_embedded_queue(tmp_path: Path) -> None:
    opts = _options(tmp_path)
    console: list[str] = []
    summary = run_loop(opts, log=console.append)
    _check_record(f"sqlite:///{opts.out / 'adamcu.db'}", summary)
    # the console follows the worker: its pre-training and adaptation progress, then a summary
    shown = "\n".join(console)
    assert "worker: progress pretrain 20/20 (100%)" in shown
    assert "worker: progress adapt full 12/12 (100%)" in shown
    assert "dashboard while it runs: http://127.0.0.1:" in shown
    print_summary(summary, opts.out, log=console.append)
    budget, miou, took, dashboard = console[-4:]
    assert budget.startswith(f"budget: {summary['budget']['answered']} of ")
    assert f"-> {summary['test_miou_after']:.1f} after" in miou
    assert str(opts.out / "report.json") in took
    assert f"dashboard.html?token={summary['dashboard_token']}" in dashboard
    assert json.loads((opts.out / "report.json").read_text())["run_id"] == summary["run_id"]
    # the same seed in process, with the ground-truth oracle, gives the same mIoU
    cfg = configure(
        TrainConfig(),
        opts.strategy,
        data_root=str(opts.data),
        budget_rate=opts.budget,
        iterations=opts.iterations,
        pretrain_iterations=opts.pretrain_iterations,
        seed=opts.seed,
        eval_every=opts.eval_every,
    )
    local = run_strategy(cfg, load_data(cfg), tmp_path / "cache")
    assert local["labeled_pixels"] == summary["labeled_pixels"]
    assert abs(local["test_miou"] - summary["test_miou_after"]) <= 0.5


@pytest.mark.slow
def test_loop_postgres_redis(tmp_path: Path, fresh_pg_url: str, redis_url: str) -> None:
    opts = _options(tmp_path, database_url=fresh_pg_url, redis_url=redis_url)
    summary = run_loop(opts, log=lambda *_: None)
    _check_record(fresh_pg_url, summary)


@pytest.mark.slow
def test_loop_human_mode_trains_on_answers_as_they_come(tmp_path: Path) -> None:
    """The worker does not wait for answers: it posts, trains on, and merges what has come."""
    opts = _options(tmp_path, mode="human")
    summary = run_loop(opts, log=lambda *_: None)
    engine = create_engine(f"sqlite:///{opts.out / 'adamcu.db'}")
    with engine.connect() as conn:
        one = lambda sql: conn.execute(text(sql)).scalar_one()  # noqa: E731
        answers = one("SELECT count(*) FROM answers")
        queries = one("SELECT count(*) FROM queries")
        distinct = one("SELECT count(*) FROM (SELECT DISTINCT image_id, y, x FROM queries) d")
        skipped = one("SELECT count(*) FROM queries WHERE status = 'skipped'")
        status = one("SELECT status FROM runs")
    engine.dispose()
    assert status == "finished" and queries == distinct  # no pixel asked twice
    assert answers <= queries - skipped <= summary["budget"]["expected"]  # a skip frees budget
    assert 0 < summary["labeled_pixels"] <= answers  # merged what had come by the end


@pytest.mark.parametrize("strategy", ["source-only", "full"])
def test_loop_hands_the_worker_a_schedule_its_strategy_accepts(strategy: str) -> None:
    """`adamcu loop --strategy source-only` used to pass --iterations, which source-only sets to
    0 itself: the worker refused. The loop passes no schedule flag the strategy overrides."""
    from stack.loop import schedule_args
    from trainer.worker.main import parse_args

    short = LoopOptions(strategy=strategy, passes=3.0, query_passes=1.0)
    for opts in (short, LoopOptions(strategy=strategy)):
        flags = schedule_args(opts)
        cfg, _ = parse_args(["--token", "t", "--strategy", strategy, *flags])
        if strategy == "source-only":
            assert flags == [] and cfg.adapt_iterations(100) == 0
        else:
            assert cfg.passes == (opts.passes or TrainConfig().passes)
    flags = schedule_args(LoopOptions(strategy="full", iterations=12))
    assert flags == ["--iterations", "12"]


def test_loop_refuses_a_schedule_before_starting_anything(capsys) -> None:
    from stack.loop import main

    with pytest.raises(SystemExit):
        main(["--passes", "3", "--out", "/nonexistent/never-written"])
    assert "set query_passes with passes" in capsys.readouterr().err


def test_loop_refuses_an_out_folder_it_did_not_make_and_deletes_nothing(tmp_path, capsys) -> None:
    """`--out` a user's folder: the loop would delete its adamcu.db and worker checkpoint;
    it refuses, naming the fix, and leaves every file as it was."""
    from stack.loop import main

    mine = tmp_path / "my-project"
    (mine / "worker").mkdir(parents=True)
    (mine / "adamcu.db").write_bytes(b"someone's database")
    (mine / "worker" / "checkpoint.pt").write_bytes(b"someone's checkpoint")
    with pytest.raises(SystemExit):
        main(["--out", str(mine), "--data", str(tmp_path / "data")])
    err = capsys.readouterr().err
    assert "was not written by `adamcu loop`" in err and "new or empty folder" in err
    assert (mine / "adamcu.db").read_bytes() == b"someone's database"
    assert (mine / "worker" / "checkpoint.pt").read_bytes() == b"someone's checkpoint"
    assert not (tmp_path / "data").exists()  # refused before anything was generated
