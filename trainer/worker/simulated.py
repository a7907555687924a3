"""An in-memory labeling service and a simulated person, for session tests and the session
benchmark (``scripts/session_bench.py``) without a server.

:class:`MemoryService` has the ``ServiceClient`` methods the session worker calls, with the
server's rules as docs/api.md states them: spent = answered + reserved, a skip or a withdrawal
releases its reservation, a pixel is asked at most once unless its query was withdrawn, a
leased or answered query is never withdrawn, an undo before the trainer read the answer reopens
the query, finishing the run releases its queries. :class:`SimulatedPerson` answers from the
ground truth at a person's pace, with pauses, skips and one undo.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from client.api import BudgetExceeded, DuplicatePixel, ServiceError
from server.schemas import budget_total
from server.schemas_budget import budget_out


@dataclass
class _Query:
    id: int
    image_id: int
    y: int
    x: int
    group: str
    score: float
    status: str = "pending"
    holder: str | None = None
    lease_until: float = 0.0


@dataclass
class MemoryService:
    """One run's labeling service in memory; thread-safe (a person thread and a worker)."""

    lease_s: float = 60.0
    window_s: float = 60.0
    run: dict = field(default_factory=dict)
    images: dict[str, int] = field(default_factory=dict)
    queries: dict[int, _Query] = field(default_factory=dict)
    answers: list[dict] = field(default_factory=list)
    metrics: list[dict] = field(default_factory=list)
    withdrawn: list[_Query] = field(default_factory=list)  # out of ``queries``, kept counted
    consumed: int = 0  # the trainer's answer cursor (an undo after it asks for a correction)
    lock: threading.RLock = field(default_factory=threading.RLock)

    # -- the trainer's side --------------------------------------------------------------------
    def create_run(self, **body: Any) -> dict:
        total = budget_total(body["budget_rate"], body["target_pixels"])
        self.run = {"id": 1, "status": "active", "budget_total": total, **body}
        return dict(self.run)

    def get_run(self, run_id: int) -> dict:
        return dict(self.run)

    def register_images(self, run_id: int, items: Any) -> dict[str, int]:
        for key, _ in items:
            self.images.setdefault(key, len(self.images) + 1)
        return dict(self.images)

    def list_images(self, run_id: int) -> list[dict]:
        return [{"id": i, "key": k} for k, i in self.images.items()]

    def post_queries(self, run_id: int, queries: list[dict]) -> list[int]:
        with self.lock:
            if self.run.get("status") != "active":
                raise ServiceError("run_finished", "the run is finished", 409)
            if len(queries) > self.budget(run_id)["remaining"]:
                raise BudgetExceeded("budget_exceeded", "over budget", 409)
            standing = {(q.image_id, q.y, q.x) for q in self.queries.values()}
            if any((q["image_id"], q["y"], q["x"]) in standing for q in queries):
                raise DuplicatePixel("duplicate_pixel", "asked before", 409)
            ids = []
            for q in queries:
                qid = len(self.queries) + len(self.withdrawn) + 1
                self.queries[qid] = _Query(
                    qid, q["image_id"], q["y"], q["x"], q["group"], q["score"]
                )
                ids.append(qid)
            return ids

    def iter_queries(self, run_id: int, after: int = 0) -> Any:
        with self.lock:
            self._expire()
            rows = [vars(q).copy() for q in self.queries.values() if q.id > after]
        return iter(sorted(rows, key=lambda q: q["id"]))

    def iter_answers_since(self, run_id: int, after: int = 0) -> Any:
        with self.lock:
            page = [dict(a) for a in self.answers if a["id"] > after]
            if page:
                self.consumed = max(self.consumed, page[-1]["id"])
        return iter(page)

    def budget(self, run_id: int) -> dict:
        """The server's ``BudgetOut`` (as JSON), by its rule
        (``server.schemas_budget.budget_out``)."""
        with self.lock:
            self._expire()
            rows = [(q.group, q.status, None, 1) for q in [*self.queries.values(), *self.withdrawn]]
            return budget_out(int(self.run["budget_total"]), rows).model_dump()

    def pace(self, run_id: int) -> dict:
        with self.lock:
            now, b = time.time(), self.budget(run_id)
            recent = [a for a in self.answers if now - a["t"] <= self.window_s]
            first = min((a["t"] for a in self.answers), default=now)
            span = max(10.0, min(self.window_s, now - first))
            rate = 60.0 * len(recent) / span if recent else 0.0
            pending = sum(q.status == "pending" for q in self.queries.values())
            leased = sum(q.status == "leased" for q in self.queries.values())
            people = sorted({a["annotator"] for a in recent})
            return {
                "window_s": self.window_s,
                "answers_per_minute": rate,
                "active_annotators": len(people),
                "annotators": people,
                "pending": pending,
                "leased": leased,
                "queue_minutes": pending / rate if rate else None,
                "budget_left": b["remaining"],
                "eta_minutes": (b["remaining"] + pending + leased) / rate if rate else None,
            }

    def withdraw(self, run_id: int, ids: list[int]) -> dict:
        with self.lock:
            self._expire()
            out, kept = [], []
            for i in ids:
                q = self.queries.get(int(i))
                if q is not None and q.status == "pending":
                    del self.queries[q.id]
                    q.status = "withdrawn"
                    self.withdrawn.append(q)
                    out.append(q.id)
                elif q is not None:
                    kept.append({"id": q.id, "status": q.status})
            if not out:
                raise ServiceError("not_withdrawable", "no pending query among them", 409)
            return {"withdrawn": out, "kept": kept}

    def post_metrics(self, run_id: int, iteration: int, miou: float, **kw: Any) -> dict:
        self.metrics.append({"iteration": iteration, "miou": miou, "t": time.time(), **kw})
        return {}

    def finish_run(self, run_id: int) -> dict:
        with self.lock:
            self.run["status"] = "finished"
            for q in self.queries.values():
                if q.status in ("pending", "leased"):
                    q.status = "skipped"
        return dict(self.run)

    # -- the annotator's side ------------------------------------------------------------------
    def claim(self, who: str, n: int) -> list[dict]:
        with self.lock:
            if self.run.get("status") != "active":
                raise ServiceError("run_finished", "finished", 409)
            self._expire()
            free = [q for q in self.queries.values() if q.status == "pending"][:n]
            for q in free:
                q.status, q.holder, q.lease_until = "leased", who, time.time() + self.lease_s
            return [vars(q).copy() for q in free]

    def answer(self, who: str, qid: int, class_id: int) -> dict:
        with self.lock:
            q = self._mine(who, qid)
            q.status = "answered"
            now = time.time()
            stamp = datetime.fromtimestamp(now, UTC).isoformat()
            answer = {
                "id": len(self.answers) + 1,
                "query_id": qid,
                "image_id": q.image_id,
                "y": q.y,
                "x": q.x,
                "class_id": class_id,
                "group": q.group,
                "annotator": who,
                "created_at": stamp,
                "t": now,
            }
            self.answers.append(answer)
            return answer

    def skip(self, who: str, qid: int) -> None:
        with self.lock:
            self._mine(who, qid).status = "skipped"

    def undo(self, who: str, qid: int) -> bool:
        """Reopen the query (leased to ``who`` again) if the trainer has not read the
        answer; else False (the person would send a correction)."""
        with self.lock:
            last = [a for a in self.answers if a["query_id"] == qid][-1]
            if last["id"] <= self.consumed:
                return False
            self.answers.remove(last)
            q = self.queries[qid]
            q.status, q.holder, q.lease_until = "leased", who, time.time() + self.lease_s
            return True

    def _mine(self, who: str, qid: int) -> _Query:
        self._expire()
        q = self.queries.get(qid)
        if q is None:
            raise ServiceError("query_withdrawn", "withdrawn", 410)
        if q.status != "leased" or q.holder != who:
            raise ServiceError("not_leased", "not leased to you", 409)
        return q

    def _expire(self) -> None:
        now = time.time()
        for q in self.queries.values():
            if q.status == "leased" and q.lease_until < now:
                q.status, q.holder = "pending", None


@dataclass
class SimulatedPerson:
    """A person at the annotator page: claims a few queries, answers each after a think time
    (``rate`` answers/s, drawn per answer), pauses now and then, skips some, undoes one."""

    service: MemoryService
    labels: Any  # (N, H, W) ground truth, rows in the service's image-id order - 1
    rate: tuple[float, float] = (0.5, 2.0)
    pause: tuple[float, float] = (0.05, 3.0)  # probability per answer, seconds
    skip: float = 0.05
    undo_at: int = 7  # the answer to undo once (0: none)
    seed: int = 0
    name: str = "person"
    answered: list[int] = field(default_factory=list)
    skipped: int = 0
    undone: int = 0
    refused: int = 0
    last_answer_at: float | None = None  # time.monotonic() of the last answer

    def run(self, stop: threading.Event) -> None:
        rng = random.Random(self.seed)
        while not stop.is_set():
            try:
                batch = self.service.claim(self.name, 5)
            except ServiceError:
                return  # the run is finished
            if not batch:
                time.sleep(0.2)
                continue
            for q in batch:
                if stop.is_set():
                    return
                time.sleep(1.0 / rng.uniform(*self.rate))
                if rng.random() < self.pause[0]:
                    time.sleep(self.pause[1])
                self._one(q, rng)

    def _one(self, q: dict, rng: random.Random) -> None:
        truth = int(self.labels[q["image_id"] - 1, q["y"], q["x"]])
        try:
            if truth == 255 or rng.random() < self.skip:
                self.service.skip(self.name, q["id"])
                self.skipped += 1
                return
            self.service.answer(self.name, q["id"], truth)
            if len(self.answered) + 1 == self.undo_at and self.service.undo(self.name, q["id"]):
                self.undone += 1
                self.service.answer(self.name, q["id"], truth)  # answered again
            self.answered.append(q["id"])
            self.last_answer_at = time.monotonic()
        except ServiceError:
            self.refused += 1  # withdrawn, lease gone or the run finished
