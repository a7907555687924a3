"""The client and two simulated oracles against the real app (uvicorn thread, temp SQLite)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import uvicorn
from PIL import Image

from client.api import BudgetExceeded, DuplicatePixel, RetryPolicy, ServiceClient
from oracle.annotate import OracleConfig, run_oracle
from oracle.cli import main
from trainer.worker.link import ServiceLink

pytest.importorskip("server.main")
from server.main import create_app  # noqa: E402
from server.migrate import upgrade  # noqa: E402
from server.settings import Settings  # noqa: E402
from stack.processes import free_port

ADMIN = "it-admin-token"
CLASSES = [{"id": i, "name": f"c{i}", "color": [i, i, i]} for i in range(5)]
H, W, N_IMAGES = 16, 24, 3
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory):
    db_url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'it.db'}"
    upgrade(db_url)
    settings = Settings(
        database_url=db_url, admin_token=ADMIN, environment="test", web_dir=None, redis_url=None
    )
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def token(base_url: str, role: str, name: str) -> str:
    with ServiceClient(base_url, ADMIN) as admin:
        return admin.request("POST", "/tokens", json={"role": role, "name": name})["token"]


@pytest.fixture
def dataset(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    """GT masks with classes 0..4 and some void (255) pixels, as the oracle reads them."""
    rng = np.random.default_rng(0)
    labels = tmp_path / "target-train" / "labels"
    labels.mkdir(parents=True)
    masks = {}
    for i in range(N_IMAGES):
        mask = rng.integers(0, 5, size=(H, W)).astype(np.uint8)
        mask[rng.random((H, W)) < 0.1] = 255
        Image.fromarray(mask).save(labels / f"{i:06d}.png")
        masks[f"target-train/{i:06d}"] = mask
    return tmp_path, masks


def new_run(base_url: str, masks: dict[str, np.ndarray], name: str):
    trainer = ServiceClient(
        base_url, token(base_url, "trainer", f"t-{name}"), retry=RetryPolicy(base_delay=0.05)
    )
    run = trainer.create_run(name, CLASSES, target_pixels=N_IMAGES * H * W, budget_rate=0.5)
    rng = np.random.default_rng(1)
    items = [(k, rng.integers(0, 256, size=(H, W, 3), dtype=np.uint8)) for k in masks]
    ids = trainer.register_images(run["id"], items)
    return trainer, run, ids


def oracle_threads(base_url: str, data: Path, run_id: int, n: int, stop: threading.Event):
    summaries: list = [None] * n

    def work(i: int) -> None:
        cfg = OracleConfig(
            server=base_url,
            token="",
            data=data,
            run=run_id,
            batch=16,
            delay_ms=1,
            seed=i,
            idle_exit=0.3,
            poll=0.05,
        )
        with ServiceClient(base_url, token(base_url, "annotator", f"oracle-{run_id}-{i}")) as c:
            summaries[i] = run_oracle(c, cfg, stop)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    return threads, summaries


def test_two_oracles_answer_every_query_with_ground_truth(base_url, dataset) -> None:
    data, masks = dataset
    trainer, run, ids = new_run(base_url, masks, "two-oracles")
    assert trainer.me()["role"] == "trainer"
    assert {row["key"]: row["id"] for row in trainer.list_images(run["id"])} == ids
    rng = np.random.default_rng(2)
    pixels = [
        (key, int(f) // W, int(f) % W)
        for key in masks
        for f in rng.choice(H * W, size=100, replace=False)
    ]
    queries = [
        {"image_id": ids[k], "y": y, "x": x, "group": "high", "score": 0.5} for k, y, x in pixels
    ]
    stop = threading.Event()
    threads, summaries = oracle_threads(base_url, data, run["id"], 2, stop)
    qids = trainer.post_queries(run["id"], queries[:150]) + trainer.post_queries(
        run["id"], queries[150:]
    )
    with pytest.raises(DuplicatePixel) as dup:
        trainer.post_queries(run["id"], queries[:1])
    assert not dup.value.maybe_stored
    asked = set(pixels)
    fresh = [
        {"image_id": ids[k], "y": y, "x": x}
        for k in masks
        for y in range(H)
        for x in range(W)
        if (k, y, x) not in asked
    ]
    assert trainer.budget(run["id"])["expected"] == run["budget_total"] == N_IMAGES * H * W // 2
    with pytest.raises(BudgetExceeded):  # 852 fresh pixels > 576 - 300 (+ skips released)
        trainer.post_queries(run["id"], fresh)

    answers = trainer.wait_for_answers(run["id"], set(qids), timeout=30, poll=0.05)
    trainer.finish_run(run["id"])
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads)

    void = {i for i, (k, y, x) in enumerate(pixels) if masks[k][y, x] == 255}
    by_query = dict(zip(qids, pixels, strict=True))
    everything = list(trainer.iter_answers_since(run["id"], 0))
    assert Counter(a["query_id"] for a in everything).most_common(1)[0][1] == 1  # no doubles
    assert {a["query_id"] for a in everything} == {qids[i] for i in range(300) if i not in void}
    assert len(answers) == 300 - len(void)
    for a in everything:
        key, y, x = by_query[a["query_id"]]
        assert (a["image_id"], a["y"], a["x"]) == (ids[key], y, x)
        assert a["class_id"] == masks[key][y, x]
    assert sum(s.answered for s in summaries) == 300 - len(void)
    assert sum(s.skipped for s in summaries) == len(void)
    assert all(s.answered > 0 and s.refused == 0 for s in summaries)
    budget = trainer.budget(run["id"])
    assert (budget["answered"], budget["skipped"], budget["reserved"]) == (
        300 - len(void),
        len(void),
        0,
    )


def test_the_workers_link_as_oracle_through_the_service(base_url, dataset) -> None:
    data, masks = dataset
    trainer, run, ids = new_run(base_url, masks, "http-oracle")
    stop = threading.Event()
    threads, _ = oracle_threads(base_url, data, run["id"], 2, stop)
    oracle = ServiceLink(trainer, run["id"], list(masks), timeout=30, poll=0.05)
    keys = ["target-train/000001"] * 40 + ["target-train/000002"] * 40
    ys, xs = np.arange(80) % H, (np.arange(80) * 7) % W
    out = oracle.answer(keys, ys, xs, ["medium"] * 80, np.linspace(0, 1, 80))
    expected = [masks[k][y, x] for k, y, x in zip(keys, ys, xs, strict=True)]
    np.testing.assert_array_equal(out, expected)  # void pixels come back as 255 (skipped)
    np.testing.assert_array_equal(oracle.answer(keys[:3], ys[:3], xs[:3], "medium"), expected[:3])
    stop.set()
    for t in threads:
        t.join(30)


def test_cli_exits_cleanly_on_sigterm_and_prints_a_summary(base_url, dataset) -> None:
    data, masks = dataset
    trainer, run, ids = new_run(base_url, masks, "cli")
    trainer.post_queries(
        run["id"], [{"image_id": ids["target-train/000000"], "y": 0, "x": x} for x in range(W)]
    )
    env = {**os.environ, "ADAMCU_TOKEN": token(base_url, "annotator", "cli-oracle")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "oracle",
            "--server",
            base_url,
            "--data",
            str(data),
            "--batch",
            "8",
            "--idle-exit",
            "30",
            "--seed",
            "0",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while trainer.budget(run["id"])["reserved"] > 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    done = trainer.budget(run["id"])
    assert done["answered"] + done["skipped"] == W
    assert f"answered={done['answered']} skipped={done['skipped']} refused=0" in out
    assert "answers/s=" in out and "mean_lead_ms=" in out


def test_cli_reports_a_refused_token_and_exits_1(base_url, dataset, capsys) -> None:
    data, _ = dataset
    assert main(["--server", base_url, "--token", "wrong", "--data", str(data), "--run", "1"]) == 1
    assert "401" in capsys.readouterr().err
