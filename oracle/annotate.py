"""The simulated oracle's work loop: claim a batch, look up GT, answer or skip, repeat.

It talks to the service as an annotator would. Several loops (threads or processes) may run
against one run: each answers only the queries it leased.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import httpx
import numpy as np

from client.api import ServiceClient, ServiceError
from client.retry import RetryPolicy
from oracle.ground_truth import GroundTruth
from oracle.simulated import SKIP, LeadTimes, SimulatedAnnotator
from server.schemas_cost import PIXEL, REGION
from server.schemas_cost import SKIP as SKIP_KIND

# answers the server refuses for one query (lease gone, answered elsewhere, bad class)
REFUSALS = frozenset({404, 409, 410, 422})
T = TypeVar("T")
# backoff between outage retries (on top of the client's own); tries bounded by cfg.outage
OUTAGE_BACKOFF = RetryPolicy(max_tries=2**31, base_delay=0.2, max_delay=2.0, jitter="equal")
log = logging.getLogger("adamcu.oracle")


@dataclass(frozen=True)
class OracleConfig:
    server: str
    token: str
    data: Path
    run: int | None = None
    batch: int = 64
    noise: float = 0.0
    skip_ignore: float = 1.0
    delay_ms: float = 0.0  # simulated think time per answered pixel
    lease: int = 60
    seed: int | None = None
    idle_exit: float = 10.0
    max_answers: int | None = None
    poll: float = 0.5
    wait: float = 0.0  # seconds a claim waits on the server for new queries (0: poll only)
    verbose: bool = False  # DEBUG logs
    outage: float = 90.0  # seconds to keep retrying through a server or queue outage
    # True: each answer's lead_time_ms is drawn from the cost model (server/schemas_cost.py:
    # a pixel click, a region click) instead of the wall time from claim to answer
    cost_model: bool = False
    cost_spread: float = 0.0  # the cost model's charge: its mean x U[1 - spread, 1 + spread]


@dataclass
class Summary:
    answered: int = 0
    skipped: int = 0
    refused: int = 0  # lease expired, answered elsewhere, ...
    lead_ms_total: int = 0
    skip_ms_total: int = 0  # the lead_time_ms sent with the skips the server took (cost model)
    started: float = field(default_factory=time.monotonic)

    def line(self) -> str:
        seconds = time.monotonic() - self.started
        rate = self.answered / seconds if seconds > 0 else 0.0
        lead = self.lead_ms_total / self.answered if self.answered else 0.0
        return (
            f"adamcu-oracle: answered={self.answered} skipped={self.skipped} "
            f"refused={self.refused} seconds={seconds:.1f} answers/s={rate:.1f} "
            f"mean_lead_ms={lead:.0f}"
        )


def outlast(cfg: OracleConfig, stop: threading.Event, call: Callable[[], T]) -> T:
    """``call()``, retried through an outage for up to ``cfg.outage`` seconds.

    The client already retries connection errors and 502/503/504 for ~30 s; on top of that a
    5xx (e.g. the server's 500 while its Redis restarts) or a transport error that outlasts the
    client's retries is retried here. Only calls that are safe to repeat go through this:
    claims (an orphaned claim's lease expires), run reads, answers (a repeat that meets
    ``already_answered`` is a refusal the caller resolves per query).
    """
    deadline = time.monotonic() + cfg.outage
    attempt = 0
    while True:
        try:
            return call()
        except ServiceError as error:
            if error.status < 500 or time.monotonic() >= deadline:
                raise
            reason = str(error)
        except httpx.TransportError as error:
            if time.monotonic() >= deadline:
                raise
            reason = f"{type(error).__name__}: {error}"
        delay = OUTAGE_BACKOFF.delay(attempt)
        attempt += 1
        log.warning("service outage (%s); trying again in %.1f s", reason, delay)
        if stop.wait(delay):
            return call()  # stopping: one last try, its error propagates


def resolve_run(client: ServiceClient, cfg: OracleConfig, stop: threading.Event) -> dict | None:
    """The run to work on: ``cfg.run``, else the newest active run (waits for one)."""
    if cfg.run is not None:
        return client.get_run(cfg.run)
    while not stop.is_set():
        active = [r for r in client.list_runs() if r["status"] == "active"]
        if active:
            return active[0]
        stop.wait(cfg.poll)
    return None


def run_oracle(client: ServiceClient, cfg: OracleConfig, stop: threading.Event) -> Summary:
    """Work until ``stop`` is set, ``max_answers`` are given, or the run is finished and
    nothing was claimable for ``idle_exit`` seconds. The in-flight batch is always finished."""
    summary = Summary()
    run = resolve_run(client, cfg, stop)
    if run is None:
        return summary
    run_id = run["id"]
    annotator = SimulatedAnnotator(
        [c["id"] for c in run["classes"]],
        noise=cfg.noise,
        skip_ignore=cfg.skip_ignore,
        rng=np.random.default_rng(cfg.seed),
    )
    # seeded apart from the annotator's draws, so its answers are those of a run without it
    seed = None if cfg.seed is None else [cfg.seed, 1]
    leads = LeadTimes(cfg.cost_spread, np.random.default_rng(seed)) if cfg.cost_model else None
    truth = GroundTruth(
        cfg.data, lambda: {row["id"]: row["key"] for row in client.list_images(run_id)}
    )
    idle_since: float | None = None
    while not stop.is_set():
        want = cfg.batch
        if cfg.max_answers is not None:
            want = min(want, cfg.max_answers - summary.answered)
            if want <= 0:
                break
        asked_at = time.monotonic()
        body: dict[str, Any] = {"n": want, "lease_seconds": cfg.lease}
        if cfg.wait > 0:  # the server holds an empty claim until the run has new queries
            body["wait_seconds"] = cfg.wait
        claim = partial(client.request, "POST", f"/runs/{run_id}/claims", json=body)
        try:
            claimed = outlast(cfg, stop, claim)["queries"]
        except ServiceError as error:  # a finished run refuses claims: idle out below
            if error.code != "run_finished":
                raise
            claimed = []
        # the lead time starts when the queries are in hand, not while the server held the
        # claim for new ones (wait); without waiting, at the claim as before
        claimed_at = time.monotonic() if cfg.wait > 0 else asked_at
        if claimed:
            idle_since = None
            classes = annotator.decide(truth.values(claimed))
            timed = None if leads is None else lead_times(leads, claimed, classes)
            batch = Claim(claimed, classes, claimed_at, timed)
            answer_batch(client, run_id, batch, cfg, summary, stop)
            continue
        if outlast(cfg, stop, lambda: client.get_run(run_id))["status"] == "finished":
            idle_since = idle_since if idle_since is not None else time.monotonic()
            if time.monotonic() - idle_since >= cfg.idle_exit:
                break
        elif cfg.wait > 0:
            continue  # the claim waited on the server: claim again at once
        stop.wait(cfg.poll)
    return summary


def lead_times(leads: LeadTimes, claimed: list[dict], classes: np.ndarray) -> list[int]:
    """The cost model's ms for each claimed query, in claim order: a skip costs a skip, an
    answer a region click (a region query) or a pixel click."""
    kinds = [
        SKIP_KIND if c == SKIP else REGION if q.get("region") else PIXEL
        for q, c in zip(claimed, classes, strict=True)
    ]
    return [leads.ms(kind) for kind in kinds]


@dataclass
class Claim:
    """One claimed batch: the queries, the decided classes (``SKIP``: skip), when it was
    claimed (``time.monotonic``) and each query's lead time in ms from the cost model (None:
    the wall time from the claim to the answer, the same for the whole batch)."""

    queries: list[dict]
    classes: np.ndarray
    at: float
    timed: list[int] | None = None


def answer_batch(
    client: ServiceClient,
    run_id: int,
    claim: Claim,
    cfg: OracleConfig,
    summary: Summary,
    stop: threading.Event | None = None,
) -> None:
    """Skip the SKIP decisions, answer the rest in one batch; per query if it is refused."""
    claimed, classes, timed = claim.queries, claim.classes, claim.timed
    todo = [(q["id"], int(c)) for q, c in zip(claimed, classes, strict=True) if c != SKIP]
    for i, (q, c) in enumerate(zip(claimed, classes, strict=True)):
        if c == SKIP:
            skip_one(client, q["id"], summary, None if timed is None else timed[i])
    if not todo:
        return
    if cfg.delay_ms > 0:
        time.sleep(cfg.delay_ms * len(todo) / 1000)
    wall = int((time.monotonic() - claim.at) * 1000)
    if timed is None:
        leads = [wall] * len(todo)
    else:
        leads = [t for t, c in zip(timed, classes, strict=True) if c != SKIP]
    body = {
        "answers": [
            {"query_id": qid, "class_id": c, "lead_time_ms": lead}
            for (qid, c), lead in zip(todo, leads, strict=True)
        ]
    }
    try:
        outlast(
            cfg,
            stop or threading.Event(),
            lambda: client.request("POST", f"/runs/{run_id}/answers", json=body),
        )
    except ServiceError as error:
        if error.status not in REFUSALS:
            raise
        for (qid, c), lead in zip(todo, leads, strict=True):
            answer_one(client, qid, c, lead, summary)
        return
    summary.answered += len(todo)
    summary.lead_ms_total += sum(leads)


def answer_one(client: ServiceClient, qid: int, class_id: int, lead: int, summary: Summary) -> None:
    try:
        client.request(
            "POST", f"/queries/{qid}/answer", json={"class_id": class_id, "lead_time_ms": lead}
        )
    except ServiceError as error:
        if error.status not in REFUSALS:
            raise
        if error.status == 422:  # the server does not accept this class: a person would skip
            skip_one(client, qid, summary)
        else:
            summary.refused += 1
        return
    summary.answered += 1
    summary.lead_ms_total += lead


def skip_one(client: ServiceClient, qid: int, summary: Summary, lead: int | None = None) -> None:
    """Skip the query, with ``lead`` (the cost model's ms for a skip) as its ``lead_time_ms``
    when given, so the server charges the skip's seconds (``/budget``'s ``skipped_seconds``);
    without one the skip is sent with no body, as before."""
    try:
        if lead is None:
            client.request("POST", f"/queries/{qid}/skip")
        else:
            client.request("POST", f"/queries/{qid}/skip", json={"lead_time_ms": lead})
    except ServiceError as error:
        if error.status not in REFUSALS:
            raise
        summary.refused += 1
        return
    summary.skipped += 1
    summary.skip_ms_total += lead or 0
