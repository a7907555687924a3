"""A human-paced session end to end: the real server, the real worker (``--mode session``) and
a simulated person (0.5-2 answers/s, pauses, skips, one undo) written over ServiceClient.

Needs the server's ``POST /runs/{id}/withdraw`` and ``GET /runs/{id}/pace`` and the client's
``withdraw`` / ``pace`` (issue 11, server half)."""

from __future__ import annotations

import json
import math
import random
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from client.api import ServiceClient, ServiceError
from stack.processes import child_env
from tests.e2e.procs import PRETRAIN_ITERATIONS, SEED, Stack, prepare_data, record
from trainer.data.folder import load_split
from trainer.labelbank import LabelBank

PACE = {"queue_minutes": 0.5, "queue_floor": 5, "queue_ceiling": 20, "min_round": 5}
FLAGS = "--queue-minutes 0.5 --queue-floor 5 --queue-ceiling 20 --stale-minutes 0.4 "
FLAGS += "--rescore-seconds 10 --eval-seconds 8 --plateau-minutes 0.25 --round-seconds 1"
BUDGET = 0.0005  # 65 of 16 x 64 x 128 pixels: about a minute at 0.5-2 answers/s


def start_session_worker(stack: Stack) -> subprocess.Popen:
    assert stack.data is not None and stack.weights is not None
    stack.trainer_token = stack.trainer_token or stack.token("trainer", "worker")
    cache = stack.worker_dir / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    shutil.copy(stack.weights, cache / stack.weights.name)
    args = [sys.executable, "-m", "trainer.worker", "--server", stack.url, "--mode", "session"]
    args += ["--data", str(stack.data), "--strategy", "full", "--budget", str(BUDGET)]
    args += ["--pretrain-iterations", str(PRETRAIN_ITERATIONS), "--seed", str(SEED)]
    args += ["--checkpoint-dir", str(stack.worker_dir), *FLAGS.split()]
    log = open(stack.out / "worker.log", "a")  # noqa: SIM115 - closed with the process
    env = child_env(stack.env, ADAMCU_TRAINER_TOKEN=stack.trainer_token)
    stack.worker = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)
    return stack.worker


class Person:
    """Claims a few queries at a time and answers each after 0.5-1 s (2-0.5 answers/s), with
    a pause now and then, a skip in twenty, and one undo (re-answered when it reopens)."""

    def __init__(self, client: ServiceClient, run_id: int, labels: torch.Tensor) -> None:
        self.c, self.run_id, self.labels = client, run_id, labels
        self.rng = random.Random(0)
        self.answered: list[int] = []
        self.skipped = self.undone = self.refused = 0
        self.keys: dict[int, int] = {}  # image id -> row of the target split

    def run(self, stop: threading.Event, rows: dict[str, int]) -> None:
        self.keys = {im["id"]: rows[im["key"]] for im in self.c.list_images(self.run_id)}
        while not stop.is_set():
            try:
                claim = self.c.request(
                    "POST", f"/runs/{self.run_id}/claims", json={"n": 3, "lease_seconds": 30}
                )
            except ServiceError:
                return  # the run is finished
            if not claim["queries"]:
                time.sleep(0.3)
            for q in claim["queries"]:
                time.sleep(self.rng.uniform(0.5, 2.0) if self.rng.random() > 0.05 else 4.0)
                self.one(q)

    def one(self, q: dict) -> None:
        truth = int(self.labels[self.keys[q["image_id"]], q["y"], q["x"]])
        try:
            if truth == 255 or self.rng.random() < 0.05:
                self.c.request("POST", f"/queries/{q['id']}/skip")
                self.skipped += 1
                return
            self.c.request("POST", f"/queries/{q['id']}/answer", json={"class_id": truth})
            if len(self.answered) == 4 and not self.undone:
                undo = self.c.request("POST", f"/queries/{q['id']}/undo")
                self.undone = 1
                if undo["reopened"]:
                    self.c.request("POST", f"/queries/{q['id']}/answer", json={"class_id": truth})
            self.answered.append(q["id"])
        except ServiceError:
            self.refused += 1  # withdrawn (409/410), lease gone, run finished


def watch_queue(c: ServiceClient, run_id: int, stop: threading.Event, seen: list) -> None:
    while not stop.is_set():
        try:
            seen.append(c.pace(run_id))
        except ServiceError:
            pass
        time.sleep(0.5)


@pytest.mark.slow
def test_a_session_paced_by_a_person_ends_by_itself(
    tmp_path: Path, fresh_pg_url: str, redis_url: str
) -> None:
    data, weights = prepare_data(tmp_path / "prep")
    stack = Stack(tmp_path / "out", fresh_pg_url, redis_url, data=data, weights=weights)
    stop, seen = threading.Event(), []
    try:
        stack.start_server()
        worker = start_session_worker(stack)
        run_id = stack.wait_run()
        target = load_split(data, "target-train")
        person_client = ServiceClient(stack.url, stack.token("annotator", "person"))
        person = Person(person_client, run_id, target.labels)
        rows = {key: i for i, key in enumerate(target.ids)}
        viewer = ServiceClient(stack.url, stack.token("viewer", "watch"))
        threads = [
            threading.Thread(target=person.run, args=(stop, rows), daemon=True),
            threading.Thread(target=watch_queue, args=(viewer, run_id, stop, seen), daemon=True),
        ]
        for t in threads:
            t.start()
        assert worker.wait(timeout=170) == 0, stack.log("worker")[-3000:]
        stop.set()
        summary = json.loads((stack.worker_dir / "summary.json").read_text())
        check(stack, fresh_pg_url, run_id, summary, person, seen, target.ids)
    finally:
        stop.set()
        stack.close()


def check(stack, db_url, run_id, summary, person, seen, keys) -> None:  # noqa: ANN001
    r = record(db_url, run_id)
    b = summary["budget"]
    assert summary["ended"] == "plateau" and person.undone == 1
    assert (
        b["answered"] == b["expected"] == r["answers"] == r["run_answered"] and b["reserved"] == 0
    )
    assert r["answers"] == r["answered_queries_in_answers"]  # no query answered twice
    assert summary["labels_trained"] == summary["labeled_pixels"] == b["answered"]
    # every answer in the worker's bank, with its class
    state = torch.load(stack.worker_dir / "bank.pt", weights_only=True)
    bank = LabelBank(1, 1, 1)
    bank.load_state_dict(state)
    labels = bank.batch(torch.arange(bank.shape[0]))[0]
    with ServiceClient(stack.url, stack.admin) as admin:
        row = {im["id"]: keys.index(im["key"]) for im in admin.list_images(run_id)}
        answers = list(admin.iter_answers_since(run_id))
        queries = list(admin.iter_queries(run_id))
    assert bank.num_labeled == len(answers)
    assert all(labels[row[a["image_id"]], a["y"], a["x"]] == a["class_id"] for a in answers)
    # withdrawn queries are released: none pending or leased, no pixel asked twice otherwise
    events = [json.loads(line) for line in (stack.worker_dir / "session.jsonl").open()]
    withdrawn = [i for e in events if e["event"] == "withdrawn" for i in e["ids"]]
    status = {q["id"]: q["status"] for q in queries}
    assert all(status.get(i, "withdrawn") not in ("pending", "leased") for i in withdrawn)
    standing = [(q["image_id"], q["y"], q["x"]) for q in queries if q["status"] != "withdrawn"]
    assert len(standing) == len(set(standing))
    # the queue never held more than N minutes of work (+ one round)
    assert seen
    for p in seen:
        rate = p["answers_per_minute"] or 0.0
        allowed = max(PACE["queue_floor"], math.ceil(PACE["queue_minutes"] * rate))
        assert p["pending"] <= min(allowed, PACE["queue_ceiling"]) + PACE["queue_floor"], p
