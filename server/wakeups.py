"""Claims that wait for work: a claim that found nothing may wait up to ``wait_seconds`` for a
run's new queries instead of the annotator polling again (``POST /runs/{id}/claims``).

The record stays the database: a waiting claim only sleeps until this process stores queries
for its run (or the run changes status), then claims again; it also claims again every
:data:`RECHECK_SECONDS` on its own, so queries stored by another server process, or leases
that expire, are found no later than a poll at that period would find them.
"""

from __future__ import annotations

import threading

RECHECK_SECONDS = 0.5  # a waiting claim looks at the record at least this often (seconds)


class Wakeups:
    """Per run, a count of the changes a waiting claim wakes for, in this process."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._changes: dict[int, int] = {}

    def seen(self, run_id: int) -> int:
        """The run's change count now: what :meth:`wait` compares against."""
        with self._cond:
            return self._changes.get(run_id, 0)

    def notify(self, run_id: int) -> None:
        """The run has new queries (or a new status): wake its waiting claims."""
        with self._cond:
            self._changes[run_id] = self._changes.get(run_id, 0) + 1
            self._cond.notify_all()

    def wait(self, run_id: int, seen: int, timeout: float) -> bool:
        """Sleep until the run changed since ``seen`` (True) or ``timeout`` seconds (False)."""
        with self._cond:
            return self._cond.wait_for(lambda: self._changes.get(run_id, 0) != seen, timeout)
