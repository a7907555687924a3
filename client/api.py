"""HTTP client for the labeling service (see docs/api.md), built on the server's own wire
contract (``server.schemas``): the worker's and the oracle's side of it.

Retry policy (``client.retry.RetryPolicy``, capped exponential backoff with jitter; by
default 16 retries, 30-61 s of waiting in all, enough to ride out a server restart). Connection
errors and 502/503/504 are retried, but only where repeating the request is harmless:

- GET, PATCH ``status=finished`` (``finish_run`` takes the 409 of finishing twice as done),
  image registration (the server dedups keys), withdraw and release (idempotent) always;
- ``post_queries``: a retry after a lost response can meet ``409 duplicate_pixel`` because the
  first attempt was stored, with ids this client never saw: it raises ``DuplicatePixel`` with
  ``maybe_stored=True`` and the caller reads the answers back by pixel (the worker's
  ``ServiceLink`` does; the run's queries can also be listed with ``iter_queries``). With
  ``maybe_stored=False`` nothing was stored;
- the annotator calls (claims, answers, skips) always: an orphaned claim expires with its lease,
  and a repeated answer or skip that meets ``already_answered``/``not_leased`` is resolved by
  the caller (``oracle/``);
- ``create_run`` and ``post_metrics`` only when the connection was never made (the request
  cannot have reached the server), since a repeat would store a second row.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import httpx
import numpy as np

from client import images
from client.errors import (
    ERRORS_BY_CODE,
    BudgetExceeded,
    DuplicatePixel,
    ServiceError,
    error_from_response,
)
from client.images import encode_png
from client.retry import DEFAULT_RETRY, RetryPolicy
from client.session import SessionCalls
from server.schemas import MAX_QUERIES_PER_BATCH

__all__ = [
    "ERRORS_BY_CODE",
    "BudgetExceeded",
    "DuplicatePixel",
    "RetryPolicy",
    "ServiceClient",
    "ServiceError",
    "encode_png",
    "error_from_response",
]

log = logging.getLogger("adamcu.client")
API = "/api/v1"
RETRY_STATUSES = frozenset({502, 503, 504})
FIRST_POLL_SECONDS = 0.01  # poll_answers: the first wait for answers (seconds), doubled


class ServiceClient(SessionCalls):
    """Synchronous client; one instance per process (it keeps one connection pool).
    The session mode's calls (withdraw, release, pace, finish_run) are in client/session.py."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float = 30.0,
        retry: RetryPolicy = DEFAULT_RETRY,
        rng: random.Random | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        """``rng`` draws the retry jitter (a seeded one makes the waits reproducible)."""
        self.retry, self._rng = retry, rng or random.Random()
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ServiceClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Any = None,
        safe: bool = True,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """Send ``method path`` (below ``/api/v1``), retrying per the module's policy.

        ``safe=False`` retries only when the connection could not be made. Returns the JSON
        body; raises ``ServiceError`` (or a subclass) for an error status.
        """
        for attempt in range(self.retry.max_tries):
            last = attempt == self.retry.retries
            try:
                response = self._http.request(
                    method, API + path, json=json, params=params, content=content, headers=headers
                )
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                if last:
                    raise
                reason = f"{type(exc).__name__}: {exc}"
            except httpx.TransportError as exc:
                if last or not safe:
                    raise
                reason = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code not in RETRY_STATUSES or last or not safe:
                    if response.is_error:
                        raise error_from_response(response)
                    return response.json()
                reason = f"HTTP {response.status_code}"
            delay = self.retry.delay(attempt, self._rng)
            log.warning(
                "%s %s: %s; retry %d of %d in %.1f s",
                method,
                path,
                reason,
                attempt + 1,
                self.retry.retries,
                delay,
            )
            time.sleep(delay)
        raise AssertionError("unreachable")

    # -- identity and runs ---------------------------------------------------------------
    def me(self) -> dict:
        return self.request("GET", "/me")

    def create_run(
        self,
        name: str,
        classes: Sequence[dict],
        target_pixels: int,
        budget_rate: float,
        strategy: str = "full",
        config: dict | None = None,
        budget_seconds: float | None = None,
    ) -> dict:
        """Create a run; ``classes`` are ``{"id", "name", "color"}`` dicts; ``budget_seconds``:
        the annotators' seconds the run may spend beside its pixel budget (None: no limit).
        Returns RunOut."""
        body = {
            "name": name,
            "classes": list(classes),
            "target_pixels": target_pixels,
            "budget_rate": budget_rate,
            "strategy": strategy,
            "config": config or {},
        }
        if budget_seconds is not None:
            body["budget_seconds"] = budget_seconds
        return self.request("POST", "/runs", json=body, safe=False)

    def list_runs(self) -> list[dict]:
        return self.request("GET", "/runs")

    def get_run(self, run_id: int) -> dict:
        return self.request("GET", f"/runs/{run_id}")

    # -- images ----------------------------------------------------------------------------
    def register_images(
        self, run_id: int, items: Sequence[tuple[str, np.ndarray]]
    ) -> dict[str, int]:
        """Upload ``(key, uint8 (H, W, 3) array)`` pairs as streamed PNG bodies, one image at a
        time, and register them in the run; returns key -> image id. Idempotent: keys already
        in the run return their ids. Images the server's store already holds are registered
        by reference instead (``client.images.file_refs`` and ``register_refs``)."""
        return images.register_arrays(self, run_id, items)

    def list_images(self, run_id: int) -> list[dict]:
        """``[{"id", "key", "width", "height"}, ...]``."""
        return self.request("GET", f"/runs/{run_id}/images")["images"]

    # -- queries and answers ---------------------------------------------------------------
    def post_queries(self, run_id: int, queries: Sequence[dict]) -> list[int]:
        """Post ``{"image_id", "y", "x", "group", "score"}`` dicts; returns their ids in order.

        Batches above 10,000 are sent in chunks, each atomic on the server: if a later chunk
        raises, the earlier ones are stored. Raises ``BudgetExceeded`` / ``DuplicatePixel``.
        """
        ids: list[int] = []
        for start in range(0, len(queries), MAX_QUERIES_PER_BATCH):
            ids += self._post_query_chunk(
                run_id, list(queries[start : start + MAX_QUERIES_PER_BATCH])
            )
        return ids

    def _post_query_chunk(self, run_id: int, chunk: list[dict]) -> list[int]:
        path, body = f"/runs/{run_id}/queries", {"queries": chunk}
        try:
            return self.request("POST", path, json=body, safe=False)["ids"]
        except ServiceError as error:
            if error.status not in RETRY_STATUSES:
                raise
        except (httpx.ConnectError, httpx.ConnectTimeout):
            raise
        except httpx.TransportError:
            pass  # the response was lost: the batch may be stored
        time.sleep(self.retry.delay(0, self._rng))
        try:
            return self.request("POST", path, json=body)["ids"]
        except DuplicatePixel as error:
            error.maybe_stored = True
            raise

    def iter_queries(self, run_id: int, after: int = 0, limit: int = 1000) -> Iterator[dict]:
        """Every query of the run (any status) with id > ``after``, paging until the end."""
        while True:
            page = self.request(
                "GET", f"/runs/{run_id}/queries", params={"after": after, "limit": limit}
            )["queries"]
            if not page:
                return
            after = int(page[-1]["id"])
            yield from page

    def budget(self, run_id: int) -> dict:
        return self.request("GET", f"/runs/{run_id}/budget")

    def answers_since(
        self, run_id: int, after: int = 0, limit: int = 1000
    ) -> tuple[list[dict], int]:
        """One page of answers with id > ``after``; returns ``(answers, cursor)``."""
        out = self.request(
            "GET", f"/runs/{run_id}/answers", params={"after": after, "limit": limit}
        )
        return out["answers"], int(out["cursor"])

    def iter_answers_since(self, run_id: int, after: int = 0, limit: int = 1000) -> Iterator[dict]:
        """All answers with id > ``after``, paging until a page that is not full (an answer
        stored after it is the next call's)."""
        while True:
            answers, cursor = self.answers_since(run_id, after, limit)
            if not answers:
                return
            after = max(cursor, int(answers[-1]["id"]))
            yield from answers
            if len(answers) < limit:
                return

    def wait_for_answers(
        self,
        run_id: int,
        query_ids: set[int],
        timeout: float,
        poll: float = 0.2,
        after: int = 0,
    ) -> list[dict]:
        """Poll until every id in ``query_ids`` has an answer, nothing is left in flight in
        the run (``budget.reserved == 0``: the rest were skipped), or ``timeout`` seconds.

        Returns the latest answer per covered query id (corrections supersede).
        """
        found: dict[int, dict] = {}

        def keep(answer: dict) -> None:
            if answer["query_id"] in query_ids:
                found[answer["query_id"]] = answer

        self.poll_answers(run_id, keep, lambda: len(found) == len(query_ids), timeout, poll, after)
        return list(found.values())

    def poll_answers(
        self,
        run_id: int,
        on_answer: Callable[[dict], None],
        done: Callable[[], bool],
        timeout: float,
        poll: float = 0.2,
        after: int = 0,
    ) -> int:
        """Feed every answer with id > ``after`` to ``on_answer`` until ``done()``, nothing is
        in flight in the run (``budget.reserved == 0``) or ``timeout``; returns the cursor.

        The first look comes :data:`FIRST_POLL_SECONDS` after the first read, each next one
        twice as long after the last, at most ``poll`` seconds apart: an answer that comes
        at once (a simulated oracle) is read at once, a person's at the ``poll`` pace."""
        deadline = time.monotonic() + timeout
        delay = min(poll, FIRST_POLL_SECONDS)
        while True:
            for answer in self.iter_answers_since(run_id, after):
                after = max(after, int(answer["id"]))
                on_answer(answer)
            if done() or time.monotonic() >= deadline:
                return after
            if self.budget(run_id)["reserved"] == 0:  # the rest were skipped: read once more
                for answer in self.iter_answers_since(run_id, after):
                    after = max(after, int(answer["id"]))
                    on_answer(answer)
                return after
            time.sleep(delay)
            delay = min(poll, 2 * delay)

    # -- metrics ---------------------------------------------------------------------------
    def post_metrics(
        self,
        run_id: int,
        iteration: int,
        miou: float,
        *,
        labeled_pixels: int = 0,
        per_class_iou: Sequence[float] = (),
        split: str = "target-val",
    ) -> dict:
        body = {
            "iteration": iteration,
            "labeled_pixels": labeled_pixels,
            "miou": miou,
            "per_class_iou": list(per_class_iou),
            "split": split,
        }
        return self.request("POST", f"/runs/{run_id}/metrics", json=body, safe=False)
