"""Region queries end to end (issue 24): the real app (uvicorn thread, SQLite), the session
worker in process with ``query_kind = "regions"`` under a budget in annotator seconds, and the
simulated oracle (``--cost-model``) over HTTP. The worker posts one region query per picked
superpixel (stored with its region and its pixel count), the oracle answers each with the
ground truth's dominant class and a region click's 3.0 s, every pixel of an answered region
enters the worker's label bank with that class, and ``/budget``'s answered seconds are the
cost model's sum, within the run's seconds budget."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import uvicorn

from client.api import ServiceClient
from oracle.annotate import OracleConfig, run_oracle
from server.main import create_app
from server.migrate import upgrade
from server.schemas import Region
from server.settings import Settings
from stack.processes import free_port
from trainer.config import TrainConfig
from trainer.cost import REGION_SECONDS, SKIP_SECONDS
from trainer.data.synth import generate_benchmark
from trainer.learning.labelbank import LabelBank
from trainer.loop.train import load_data
from trainer.selection.regions import dominant_answers
from trainer.strategies import configure
from trainer.worker.run import WorkerOptions
from trainer.worker.session_main import run_session

ADMIN = "region-admin-token"
# seconds before the test finishes the run as an admin (a hung session then fails the
# "plateau" assertion instead of hanging the suite): a guard, not a target
GUARD_SECONDS = 180
TINY = {"source-train": 16, "target-train": 6, "target-val": 2, "target-test": 2}
SECONDS_PER_IMAGE = 3.0  # 6 images x 3.0 s: 18 s, six region clicks of 3.0 s
PACE = {
    "queue_minutes": 0.2,
    "queue_floor": 5,
    "queue_ceiling": 10,
    "min_round": 1,
    "eval_seconds": 1,
    "plateau_minutes": 0.02,
    "round_seconds": 0.2,
    "status_seconds": 0.3,
    "rescore_seconds": 60,
    "weight_average": 0.0,
}


@pytest.fixture
def server(tmp_path: Path):
    db = tmp_path / "e2e.db"
    upgrade(f"sqlite:///{db}")
    settings = Settings(
        database_url=f"sqlite:///{db}",
        admin_token=ADMIN,
        environment="test",
        web_dir=None,
        redis_url=None,
        store_root=tmp_path / "store",
    )
    port = free_port()
    app = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=app.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not app.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", db
    app.should_exit = True
    thread.join(10)


def test_a_session_of_region_queries_is_answered_by_the_cost_model_oracle(
    server, tmp_path: Path
) -> None:
    url, db = server
    data_root = generate_benchmark(tmp_path / "data", counts=TINY, seed=7)
    cfg = configure(
        TrainConfig(),
        "region-random",
        data_root=str(data_root),
        pretrain_iterations=3,
        budget_rate=0.05,  # the pixel cap (3,276 of 6 x 64 x 128) never binds before the seconds
        budget_seconds_per_image=SECONDS_PER_IMAGE,
        device="cpu",
        seed=0,
    )
    assert cfg.query_kind == "regions"
    stop, summaries = threading.Event(), []

    def oracle() -> None:
        ocfg = OracleConfig(
            server=url,
            token=ADMIN,
            data=data_root,
            batch=4,
            seed=3,
            idle_exit=0.5,
            poll=0.05,
            cost_model=True,
        )
        with ServiceClient(url, ADMIN) as c:
            summaries.append(run_oracle(c, ocfg, stop))

    thread = threading.Thread(target=oracle, daemon=True)
    thread.start()

    def guard() -> None:  # run 1: the fresh database's only run
        with ServiceClient(url, ADMIN) as c:
            c.request("PATCH", "/runs/1", json={"status": "finished"})

    watchdog = threading.Timer(GUARD_SECONDS, guard)
    watchdog.start()
    opts = WorkerOptions(url, ADMIN, "session", tmp_path / "w", session=PACE)
    try:
        summary = run_session(cfg, opts)
    finally:
        watchdog.cancel()
        stop.set()
        thread.join(30)
    assert summary["ended"] == "plateau"

    with ServiceClient(url, ADMIN) as c:
        run_id = summary["run_id"]
        run = c.get_run(run_id)
        budget = c.budget(run_id)
        answers = list(c.iter_answers_since(run_id))
        keys = {im["id"]: im["key"] for im in c.list_images(run_id)}
    total = SECONDS_PER_IMAGE * TINY["target-train"]
    assert run["budget_seconds"] == pytest.approx(total)

    # every query is a region query, stored with its region's pixel count
    with sqlite3.connect(db) as con:
        stored = con.execute("SELECT region, pixels, status FROM queries").fetchall()
    assert stored and all(region is not None for region, _, _ in stored)
    assert all(Region.model_validate_json(r).pixels == n for r, n, _ in stored)

    # answered with the GT's dominant class (void out, ties to the smallest id), 3.0 s each
    data = load_data(cfg)
    rows = {key: i for i, key in enumerate(data.target.ids)}
    bank = LabelBank(*data.target.labels.shape)
    bank.load_state_dict(torch.load(tmp_path / "w" / "bank.pt"))
    labels, _, _ = bank.batch(torch.arange(len(data.target.ids)))
    assert answers, "the oracle answered no region"
    for a in answers:
        assert a["region"] is not None and a["lead_time_ms"] == 1000 * REGION_SECONDS
        row = rows[keys[a["image_id"]]]
        cells = torch.tensor(Region.model_validate(a["region"]).cells())
        truth = data.target.labels[row, cells[:, 0], cells[:, 1]].long()
        dominant, _, _ = dominant_answers(torch.zeros(len(truth), dtype=torch.long), truth)
        assert a["class_id"] == int(dominant[0])
        # the worker's bank: every pixel of the region labelled with the answered class
        assert (labels[row, cells[:, 0], cells[:, 1]] == a["class_id"]).all()
    assert summary["labeled_pixels"] == sum(
        Region.model_validate(a["region"]).pixels for a in answers
    )

    # the annotators' seconds: the cost model's sum, within the run's seconds budget
    assert budget["answered_seconds"] == pytest.approx(REGION_SECONDS * len(answers))
    assert budget["answered_seconds"] <= total
    assert budget["answered"] == summary["labeled_pixels"]
    assert summaries and summaries[0].answered == len(answers)
    assert np.isclose(summaries[0].lead_ms_total, 1000 * budget["answered_seconds"])
    # the oracle's skips (all-void regions) are charged 1.2 s each too, and the worker spent
    # answers and skips together within the seconds budget
    assert budget["skipped_seconds"] == pytest.approx(SKIP_SECONDS * summaries[0].skipped)
    assert np.isclose(summaries[0].skip_ms_total, 1000 * budget["skipped_seconds"])
    assert budget["spent_seconds"] <= total
