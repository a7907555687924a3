"""The load benchmark's simulated clients (``scripts/load_bench.py``): a minimal keep-alive
HTTP/1.1 client, annotators that claim and answer (closed loop, or paced on planned slots), and
a trainer that keeps the queue full."""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from dataclasses import dataclass, field

SIDE = 1000  # image side; pixels are asked in order over the images


class Conn:
    """One keep-alive HTTP/1.1 connection; JSON in and out, nothing else."""

    def __init__(self, port: int, token: str) -> None:
        self.port = port
        self.auth = f"Authorization: Bearer {token}\r\nHost: 127.0.0.1\r\n"
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.used = 0.0

    async def post(self, path: str, body: object) -> tuple[int, object]:
        if self.writer is not None and time.monotonic() - self.used > 3:
            self.close()  # the server drops keep-alive connections idle for 5 s
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        data = json.dumps(body).encode() if body is not None else b""
        head = (
            f"POST {path} HTTP/1.1\r\n{self.auth}Content-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n\r\n"
        )
        self.writer.write(head.encode() + data)
        raw = await self.reader.readuntil(b"\r\n\r\n")
        status = int(raw[9:12])
        length = 0
        for line in raw.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        payload = await self.reader.readexactly(length)
        self.used = time.monotonic()
        return status, json.loads(payload) if payload else None

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


@dataclass
class Phase:
    name: str
    claim_ms: list[float] = field(default_factory=list)
    answer_ms: list[float] = field(default_factory=list)
    skip_ms: list[float] = field(default_factory=list)
    undo_ms: list[float] = field(default_factory=list)
    answers: int = 0  # answered (and not undone) inside the measured window
    skips: int = 0
    undos: int = 0
    requests: int = 0
    empty_claims: int = 0
    errors: dict[str, int] = field(default_factory=dict)


@dataclass
class Shared:
    port: int
    run_id: int
    image_ids: list[int]
    trainer: str
    answered: set[int] = field(default_factory=set)  # every query the client saw answered
    skipped: set[int] = field(default_factory=set)  # every query the client saw skipped
    # the single phase skips the queries whose id is a multiple of ``skip_every`` (the UI's
    # Space key) and undoes, then answers again, those one above a multiple of ``undo_every``
    # (the UI's Backspace); 0: never
    skip_every: int = 0
    undo_every: int = 0
    posted: int = 0
    measuring: bool = False
    stop: bool = False


async def _timed(
    sh: Shared,
    ph: Phase,
    conn: Conn,
    path: str,
    body: object,
    sink: list[float],
    since: float | None = None,
):
    """One request; its latency (from ``since``, the intended send time, when given) goes to
    ``sink`` while measuring; a refusal is counted by status and code."""
    t0 = time.perf_counter() if since is None else since
    status, out = await conn.post(path, body)
    if sh.measuring:
        sink.append((time.perf_counter() - t0) * 1000)
        ph.requests += 1
    if status >= 300:
        code = out.get("error", {}).get("code", "?") if isinstance(out, dict) else "?"
        key = f"{status} {code}"
        ph.errors[key] = ph.errors.get(key, 0) + 1
    return status, out


async def annotator(
    sh: Shared,
    ph: Phase,
    token: str,
    n: int,
    batch: bool,
    interval: float | None = None,
    offset: float = 0.0,
) -> None:
    """Claim ``n``, answer them (one request each, or one batch request); until stopped.

    ``interval``: paced mode. The annotator means to send one answer request every
    ``interval`` seconds (slots from ``offset``); a claim, when its queue is empty, goes in
    the answer's slot. Latency is counted from the slot's time, not the send time, so a
    server that falls behind is charged for the wait (no coordinated omission). ``None``:
    closed loop, the next request as soon as the last one came back.
    """
    conn = Conn(sh.port, token)
    claims = f"/api/v1/runs/{sh.run_id}/claims"
    slot = time.perf_counter() + offset
    todo: list[dict] = []

    async def wait_slot() -> float | None:
        """Sleep until the next slot; its planned time (``None`` in the closed loop)."""
        nonlocal slot
        if interval is None:
            return None
        planned, slot = slot, slot + interval
        await asyncio.sleep(max(planned - time.perf_counter(), 0.0))
        return planned

    try:
        while not sh.stop:
            t_slot = await wait_slot()
            if not todo:
                st, out = await _timed(
                    sh, ph, conn, claims, {"n": n, "lease_seconds": 300}, ph.claim_ms, t_slot
                )
                todo = list(out["queries"]) if st == 200 else []
                if not todo:
                    ph.empty_claims += sh.measuring
                    await asyncio.sleep(0.01)
                    continue
                t_slot = None  # the answer goes right after the claim that fed it
            todo = await _answer(sh, ph, conn, todo, batch, t_slot)
    finally:
        conn.close()


async def _answer(
    sh: Shared, ph: Phase, conn: Conn, todo: list[dict], batch: bool, t_slot: float | None
) -> list[dict]:
    """Answer claimed queries, all in one request (``batch``) or the first one; returns the
    queries left to answer."""
    if batch:
        items = [{"query_id": q["id"], "class_id": q["id"] % 4, "lead_time_ms": 500} for q in todo]
        path = f"/api/v1/runs/{sh.run_id}/answers"
        st, _ = await _timed(sh, ph, conn, path, {"answers": items}, ph.answer_ms, t_slot)
        if st == 200:
            sh.answered.update(q["id"] for q in todo)
            ph.answers += len(todo) * sh.measuring
        return []
    q, rest = todo[0], todo[1:]
    if sh.skip_every and q["id"] % sh.skip_every == 0:
        path = f"/api/v1/queries/{q['id']}/skip"
        st, _ = await _timed(sh, ph, conn, path, None, ph.skip_ms, t_slot)
        if st == 200:
            sh.skipped.add(q["id"])
            ph.skips += sh.measuring
        return rest
    body = {"class_id": q["id"] % 4, "lead_time_ms": 500}
    path = f"/api/v1/queries/{q['id']}/answer"
    st, _ = await _timed(sh, ph, conn, path, body, ph.answer_ms, t_slot)
    if st != 200:
        return rest
    sh.answered.add(q["id"])
    ph.answers += sh.measuring
    if not sh.undo_every or q["id"] % sh.undo_every != 1 or q.get("undone"):
        return rest
    path = f"/api/v1/queries/{q['id']}/undo"
    st, out = await _timed(sh, ph, conn, path, None, ph.undo_ms)
    if st != 200 or not out["reopened"]:
        return rest
    sh.answered.discard(q["id"])  # its answer row is gone; the query is leased to us again
    ph.answers -= sh.measuring
    ph.undos += sh.measuring
    return [{**q, "undone": True}, *rest]  # answered again in the next slot


async def post_queries(sh: Shared, conn: Conn, chunk: int) -> None:
    qs = []
    for i in range(sh.posted, sh.posted + chunk):
        img, pix = divmod(i, SIDE * SIDE)
        qs.append(
            {
                "image_id": sh.image_ids[img],
                "y": pix // SIDE,
                "x": pix % SIDE,
                "group": "high",
                "score": 0.5,
            }
        )
    status, out = await conn.post(f"/api/v1/runs/{sh.run_id}/queries", {"queries": qs})
    if status != 201:
        raise RuntimeError(f"the trainer's query batch was refused: {status} {out}")
    sh.posted += chunk


async def trainer(sh: Shared, low_water: int, chunk: int) -> None:
    """Keep at least ``low_water`` queries outstanding (posted, neither answered nor skipped)."""
    conn = Conn(sh.port, sh.trainer)
    try:
        while True:
            while sh.posted - len(sh.answered) - len(sh.skipped) < low_water:
                await post_queries(sh, conn, chunk)
            if sh.stop:
                return
            await asyncio.sleep(0.02)
    finally:
        conn.close()


def add_crowd_options(p: argparse.ArgumentParser, skip_every: int, undo_every: int) -> None:
    """The single phase's skips and undos (scripts/load_annotators.py, ``Shared``)."""
    p.add_argument(
        "--skip-every",
        type=int,
        default=skip_every,
        help="skip the queries whose id is a multiple of this (5: one in five, the UI's Space "
        "key); 0: never",
    )
    p.add_argument(
        "--undo-every",
        type=int,
        default=undo_every,
        help="undo the answer to one query in this many, then answer it again (the UI's "
        "Backspace); 0: never",
    )
