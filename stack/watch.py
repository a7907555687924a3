"""The main job's deadline on progress, not on the clock, and the one sentence a failure prints.

``adamcu loop`` and ``scripts/stack.sh`` wait for the worker as long as it makes progress: a
new progress line in its log (pre-training, adaptation, the session's line every 10 s), its
run registered, an answer stored. They give up when nothing progressed for ``--stall-timeout``
seconds, or when ``--timeout`` seconds passed (none by default). Every failure they expect is a
:class:`LoopError` whose message is one sentence: what happened, what to do, which log to read.
"""

from __future__ import annotations

import argparse
import subprocess
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

STALL_TIMEOUT = 600.0  # seconds without progress; pre-training on a busy 2-core machine logs
# a line every 10 s as long as one iteration takes less than that
ERROR_LOG = "loop-error.log"  # in --out: the traceback of a failure nobody foresaw


class LoopError(RuntimeError):
    """A failure of the main job, explained in one sentence (its message)."""


def last_line(path: Path) -> str:
    """The last non-empty line of a log, or a note that there is none."""
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except FileNotFoundError:
        return "no log written"
    return lines[-1].strip() if lines else "the log is empty"


@dataclass
class Deadline:
    """Trips when nothing progressed for ``stall`` seconds (0: never) or when ``total`` seconds
    passed since it was made (0: no limit). ``log``: the worker's log, named in the message."""

    log: Path
    stall: float = STALL_TIMEOUT
    total: float = 0.0
    clock: Callable[[], float] = time.monotonic
    last_progress: str = "none yet"
    started: float = field(init=False)
    last: float = field(init=False)

    def __post_init__(self) -> None:
        self.started = self.last = self.clock()

    def progressed(self, what: str) -> None:
        self.last, self.last_progress = self.clock(), what

    def check(self) -> None:
        now = self.clock()
        reused = "(finished pre-training is reused)"
        if self.total and now - self.started > self.total:
            raise LoopError(
                f"stopped after the --timeout of {self.total:.0f} s while the worker was still "
                f"working (last progress: {self.last_progress}); rerun with a larger --timeout "
                f"or --timeout 0 for no limit {reused}; the worker's log is {self.log}"
            )
        if self.stall and now - self.last > self.stall:
            raise LoopError(
                f"stopped: the worker made no progress for {self.stall:.0f} s (last progress: "
                f"{self.last_progress}; last log line: {last_line(self.log)!r}); read {self.log}, "
                f"and on a busy machine rerun with --stall-timeout {2 * self.stall:.0f} {reused}"
            )


def worker_exited(code: int, log: Path, before: str = "") -> LoopError:
    return LoopError(
        f"the worker exited with code {code}{before}; its log {log} ends with "
        f"{last_line(log)!r}: fix what it says and rerun"
    )


def wait_for_run(
    url: str,
    token: str,
    worker: subprocess.Popen,
    deadline: Deadline,
    tick: Callable[[], None] = lambda: None,
    every: float = 0.5,
) -> int:
    """The run id once the worker has registered it (it pre-trains first); ``tick`` is called
    at every poll (the main job shows the worker's progress lines and moves the deadline)."""
    headers = {"Authorization": f"Bearer {token}"}
    while True:
        tick()
        if worker.poll() is not None:
            raise worker_exited(worker.returncode, deadline.log, " before registering its run")
        runs = httpx.get(f"{url}/api/v1/runs", headers=headers, timeout=10).json()
        if runs:
            deadline.progressed(f"run {runs[0]['id']} registered")
            return int(runs[0]["id"])
        deadline.check()
        time.sleep(every)


def answers_tick(url: str, token: str, run_id: int, deadline: Deadline, every: float = 5.0):
    """A tick that counts a new answer on the run (read every ``every`` s) as progress."""
    seen, next_at = -1, 0.0

    def tick() -> None:
        nonlocal seen, next_at
        if time.monotonic() < next_at:
            return
        next_at = time.monotonic() + every
        try:
            r = httpx.get(
                f"{url}/api/v1/runs/{run_id}/budget",
                headers={"Authorization": f"Bearer {token}"},
                timeout=10,
            )
            answered = int(r.json()["answered"])
        except (httpx.HTTPError, ValueError, KeyError):
            return  # the server's own failure shows in the worker's exit
        if answered > seen:
            if seen >= 0:
                deadline.progressed(f"{answered} pixels answered")
            seen = answered

    return tick


def wait_for_worker(
    worker: subprocess.Popen, deadline: Deadline, tick: Callable[[], None], every: float = 1.0
) -> int:
    """The worker's exit code, calling ``tick`` every ``every`` seconds while it runs."""
    while worker.poll() is None:
        tick()
        deadline.check()
        time.sleep(every)
    tick()
    return worker.returncode


def add_deadline_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--stall-timeout",
        type=float,
        default=STALL_TIMEOUT,
        help="give up when the worker makes no progress (no progress line, run, or answer) "
        "for this many seconds; 0: never (default %(default)s)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=0.0,
        help="give up after this many seconds however the worker progresses; 0: no limit (default)",
    )
    p.add_argument("--port", type=int, default=0, help="the server's port; 0: a free one")


def explain(exc: BaseException, out: Path, prog: str) -> str:
    """The one sentence a failure prints; an unforeseen one's traceback goes to a file."""
    if isinstance(exc, LoopError):
        return f"{prog}: {exc}"
    path = Path(out) / ERROR_LOG
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(traceback.format_exception(exc)))
        where = f"the traceback is in {path}"
    except OSError:
        where = "rerun with --verbose to see where"
    return (
        f"{prog}: failed unexpectedly ({type(exc).__name__}: {exc}); {where}, and the "
        f"processes' logs are in {out}: rerun, and report it if it happens again"
    )
