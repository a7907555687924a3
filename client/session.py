"""The session mode's calls of ``ServiceClient`` (docs/api.md): withdraw stale queries,
release leases, read the pace, finish a run once."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from client.errors import ServiceError


class _Requests(Protocol):
    def request(self, method: str, path: str, **kw: Any) -> Any: ...


class SessionCalls:
    """Mixed into ``ServiceClient``, whose ``request`` (with its retries) they use."""

    def withdraw(self: _Requests, run_id: int, ids: Sequence[int]) -> dict:
        """Withdraw pending queries ``ids`` of the run (trainer): their reservations are
        released. Returns ``{"withdrawn": [ids now withdrawn, earlier ones included],
        "kept": [{"id", "status"}]}`` (leased, answered or skipped: never withdrawn).
        Raises ``ServiceError`` 409 ``not_withdrawable`` when none of them is pending or
        withdrawn (nothing changed). Idempotent, so a lost response is retried."""
        return self.request(
            "POST", f"/runs/{run_id}/queries/withdraw", json={"ids": [int(i) for i in ids]}
        )

    def release(self: _Requests, ids: Sequence[int]) -> dict:
        """Give the caller's unanswered leases among ``ids`` back at once (annotator);
        others' are untouched. Returns ``{"released": [ids]}``. Idempotent."""
        return self.request("POST", "/queries/release", json={"ids": [int(i) for i in ids]})

    def pace(self: _Requests, run_id: int, window_s: int | None = None) -> dict:
        """The run's measured pace: ``{"window_s", "answers_per_minute", "active_annotators",
        "annotators": [{"id", "name", "answered", "skipped", "answers_per_minute"}],
        "pending", "leased", "queue_minutes", "budget_left", "eta_minutes"}`` (the minutes
        are None while nobody answered in the window)."""
        params = None if window_s is None else {"window_s": window_s}
        return self.request("GET", f"/runs/{run_id}/pace", params=params)

    def finish_run(self: _Requests, run_id: int) -> dict:
        """Finish the run and return it. A run already finished (by an admin, or by a first
        attempt whose response was lost) is returned as it is: the server's 409
        ``run_finished`` for finishing twice means the wish is already true."""
        try:
            return self.request("PATCH", f"/runs/{run_id}", json={"status": "finished"})
        except ServiceError as error:
            if error.status != 409 or error.code != "run_finished":
                raise
        return self.request("GET", f"/runs/{run_id}")
