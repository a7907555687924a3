"""Claims that wait for work: a claim that found nothing may wait up to ``wait_seconds`` for a
run's new queries instead of the annotator polling again (``POST /runs/{id}/claims``).

The record stays the database: a waiting claim only sleeps until this process stores queries
for its run (or the run changes status), then claims again; it also claims again every
:data:`RECHECK_SECONDS` on its own, so queries stored by another server process, or leases
that expire, are found no later than a poll at that period would find them.

A claim waits on the event loop (:meth:`Wakeups.wait`), not in a worker thread: the pool has
``Settings.threads`` of them (8 by default), and claims that held one each while waiting kept
the trainer's post of new queries, and every other request, waiting behind them. ``notify``
comes from the worker threads that store queries; it wakes the waiting claims on their loop.
"""

from __future__ import annotations

import asyncio
import threading

RECHECK_SECONDS = 0.5  # a waiting claim looks at the record at least this often (seconds)


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class Wakeups:
    """Per run, a count of the changes a waiting claim wakes for, in this process, and the
    claims waiting on it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._changes: dict[int, int] = {}
        self._waiting: dict[int, set[asyncio.Future[None]]] = {}

    def seen(self, run_id: int) -> int:
        """The run's change count now: what :meth:`wait` compares against."""
        with self._lock:
            return self._changes.get(run_id, 0)

    def notify(self, run_id: int) -> None:
        """The run has new queries (or a new status): wake its waiting claims (from any
        thread)."""
        with self._lock:
            self._changes[run_id] = self._changes.get(run_id, 0) + 1
            futures = self._waiting.pop(run_id, set())
        for future in futures:
            future.get_loop().call_soon_threadsafe(_wake, future)

    async def wait(self, run_id: int, seen: int, timeout: float) -> bool:
        """Sleep until the run changed since ``seen`` (True) or ``timeout`` seconds (False),
        on the running event loop, holding no thread."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        with self._lock:
            if self._changes.get(run_id, 0) != seen:
                return True
            self._waiting.setdefault(run_id, set()).add(future)
        try:
            done, _ = await asyncio.wait({future}, timeout=timeout)
            return bool(done)
        finally:
            with self._lock:
                waiting = self._waiting.get(run_id)
                if waiting is not None:
                    waiting.discard(future)
                    if not waiting:
                        del self._waiting[run_id]
