"""Progress of the long loops (pre-training, adaptation) where their user can see it.

On a terminal a tqdm bar; anywhere else (``docker compose logs``, the main job's worker.log,
CI) one INFO line every ``every`` seconds and one at the end, each of the form

    progress pretrain 200/800 (25%) 3.4 it/s, eta 2m57s, loss 0.831

The word ``progress`` leads the message so that a launcher reading the log (``adamcu loop``)
finds these lines and nothing else. I/O only: the loops call :meth:`Progress.update`.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import Any

from tqdm import tqdm

log = logging.getLogger("adamcu.progress")
MARK = "progress"


def duration(seconds: float) -> str:
    """``75`` -> ``"1m15s"``, ``3725`` -> ``"1h02m"``, ``9`` -> ``"9s"``."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def progress_line(
    desc: str, done: int, total: int, rate: float, fields: dict[str, Any] | None = None
) -> str:
    """The log line of a loop ``done`` of ``total`` steps into it, going at ``rate`` steps/s."""
    share = 100 * done / total if total else 100.0
    head = f"{MARK} {desc} {done}/{total} ({share:.0f}%)"
    parts = []
    if rate > 0:
        eta = f", eta {duration((total - done) / rate)}" if done < total else ""
        parts.append(f"{rate:.2f} it/s{eta}")
    for k, v in (fields or {}).items():
        parts.append(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}")
    return head + (" " + ", ".join(parts) if parts else "")


def progress_mode(progress: bool | str) -> str:
    """A loop's ``progress`` argument: ``True`` is ``"auto"``, ``False`` is ``"off"``."""
    if isinstance(progress, bool):
        return "auto" if progress else "off"
    return progress


class Progress:
    """``mode``: ``"bar"`` (tqdm), ``"log"`` (lines every ``every`` s), ``"off"``, or ``"auto"``
    (a bar when stderr is a terminal, log lines otherwise)."""

    def __init__(
        self,
        total: int,
        desc: str,
        *,
        mode: str = "auto",
        every: float = 10.0,
        start: int = 0,
        clock: Callable[[], float] = time.monotonic,
        logger: logging.Logger = log,
    ) -> None:
        if mode == "auto":
            mode = "bar" if sys.stderr.isatty() else "log"
        if mode not in ("bar", "log", "off"):
            raise ValueError(f"progress mode {mode!r}: use auto, bar, log or off")
        self.total, self.desc, self.mode, self.every = total, desc, mode, every
        self.done, self.first, self.clock, self.logger = start, start, clock, logger
        self.started = clock()
        self.next_at = self.started + every
        self.fields: dict[str, Any] = {}
        self.pending: dict[str, Any] = {}
        self.bar = (
            tqdm(total=total, initial=start, desc=desc, leave=False) if mode == "bar" else None
        )

    def update(self, n: int = 1, **fields: Any) -> None:
        """``n`` more steps done. A field that is a callable (a count) or a tensor (a loss: a
        host sync) is called or read only when it is shown, every ``every`` seconds."""
        self.done += n
        self.pending.update(fields)
        if self.mode == "off" or self.clock() < self.next_at:
            if self.bar is not None:
                self.bar.update(n)
            return
        self._resolve()
        if self.bar is not None:
            self.bar.set_postfix(self._shown(), refresh=False)
            self.bar.update(n)
        elif self.done < self.total:
            self._emit()
        self.next_at = self.clock() + self.every

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.mode == "log" and self.done > self.first:
            self._resolve()
            self._emit()

    def _resolve(self) -> None:
        for k, v in self.pending.items():
            v = v() if callable(v) else v
            self.fields[k] = float(v) if hasattr(v, "item") else v  # a tensor: synced here
        self.pending = {}

    def _shown(self) -> dict[str, str]:
        return {k: f"{v:.3f}" if isinstance(v, float) else str(v) for k, v in self.fields.items()}

    def _emit(self) -> None:
        elapsed = self.clock() - self.started
        # the rate of this process's steps: a resumed loop does not count what it skipped
        rate = (self.done - self.first) / elapsed if elapsed > 0 else 0.0
        self.logger.info("%s", progress_line(self.desc, self.done, self.total, rate, self.fields))

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def adapt_update(bar: Progress, stats: Any, bank: Any, done: float, passes: float) -> None:
    """One adaptation step on ``bar``: the passes done, the step's loss (``StepStats.loss``, a
    device-to-host copy) and the bank's labeled pixels, the last two read only when shown."""
    shown = f"{done:.1f}/{passes:.1f}"
    bar.update(1, passes=shown, loss=lambda: stats.loss, labeled=lambda: bank.num_labeled)
