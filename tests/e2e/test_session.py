"""A human-paced session end to end: the real server, the real worker (``--mode session``) and
a simulated person (0.5-2 answers/s, pauses, skips, one undo) written over ServiceClient.

Needs the server's ``POST /runs/{id}/withdraw`` and ``GET /runs/{id}/pace`` and the client's
``withdraw`` / ``pace`` (issue 11, server half)."""

from __future__ import annotations

import math
import random
import subprocess
import threading
import time
from pathlib import Path

import pytest
import torch

from client.api import ServiceClient, ServiceError
from tests.e2e.procs import Stack, assert_session_ended_clean, prepare_data, start_session_worker
from trainer.data.folder import load_split

# seconds the worker may take before the test calls the session hung (a guard, not a target)
SESSION_GUARD_SECONDS = 300
PACE = {"queue_minutes": 0.5, "queue_floor": 5, "queue_ceiling": 20, "min_round": 5}


class Person:
    """Claims a few queries at a time and answers each after 0.5-1 s (2-0.5 answers/s), with
    a pause now and then, a skip in twenty, and one undo (re-answered when it reopens)."""

    def __init__(self, client: ServiceClient, run_id: int, labels: torch.Tensor) -> None:
        self.c, self.run_id, self.labels = client, run_id, labels
        self.rng = random.Random(0)
        self.answered: list[int] = []
        self.skipped = self.undone = self.refused = 0
        self.keys: dict[int, int] = {}  # image id -> row of the target split
        self.rows: dict[str, int] = {}  # image key -> row of the target split

    def row(self, image_id: int) -> int:
        """The target row of ``image_id``, the run's image list read again when the worker
        registered the image after the person last read it (a KeyError once, under load)."""
        if image_id not in self.keys:
            listed = self.c.list_images(self.run_id)
            self.keys = {im["id"]: self.rows[im["key"]] for im in listed}
        return self.keys[image_id]

    def run(self, stop: threading.Event, rows: dict[str, int]) -> None:
        self.rows = rows
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
        truth = int(self.labels[self.row(q["image_id"]), q["y"], q["x"]])
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
        # a guard against a session that never ends, not a speed target: the labeling takes
        # about a minute, the worker 140-180 s on a loaded 2-core machine
        try:
            code = worker.wait(timeout=SESSION_GUARD_SECONDS)
        except subprocess.TimeoutExpired:
            pytest.fail("the session did not end by itself:\n" + stack.log("worker")[-3000:])
        assert code == 0, stack.log("worker")[-3000:]
        stop.set()
        check(stack, run_id, person, seen, target.ids)
    finally:
        stop.set()
        stack.close()


def check(stack, run_id, person, seen, keys) -> None:  # noqa: ANN001
    assert person.undone == 1
    assert_session_ended_clean(stack, run_id, keys)
    # the queue never held more than N minutes of work (+ one round)
    assert seen
    for p in seen:
        rate = p["answers_per_minute"] or 0.0
        allowed = max(PACE["queue_floor"], math.ceil(PACE["queue_minutes"] * rate))
        assert p["pending"] <= min(allowed, PACE["queue_ceiling"]) + PACE["queue_floor"], p
