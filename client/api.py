"""HTTP client for the labeling service (see docs/api.md): the trainer's side of the contract.

Retry policy. Connection errors and 502/503/504 are retried with exponential backoff (0.2 s
doubling, capped at 5 s, 10 retries: about 31 s, enough to ride out a server restart), but only
where repeating the request is harmless:

- GET, PATCH ``status=finished`` and image registration (the server dedups keys) always;
- ``post_queries``: a retry after a lost response can meet ``409 duplicate_pixel`` because the
  first attempt was stored. The contract has no endpoint listing a run's queries, so the ids
  cannot be read back: the client raises ``DuplicatePixel`` with ``maybe_stored=True`` and the
  caller reads the answers back by pixel (``HttpOracle`` does; the label bank merges answers
  by ``(image_id, y, x)``, so the worker needs no ids). With ``maybe_stored=False`` nothing was
  stored;
- the annotator calls (claims, answers, skips) always: an orphaned claim expires with its lease,
  and a repeated answer or skip that meets ``already_answered``/``not_leased`` is resolved by
  the caller (``oracle/``);
- ``create_run`` and ``post_metrics`` only when the connection was never made (the request
  cannot have reached the server), since a repeat would store a second row.
"""

from __future__ import annotations

import base64
import io
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import httpx
import numpy as np
from PIL import Image

log = logging.getLogger("adamcu.client")
API = "/api/v1"
RETRY_STATUSES = frozenset({502, 503, 504})
MAX_QUERIES_PER_POST = 10_000
IMAGE_BYTES_PER_POST = 1_500_000  # base64 PNG per request; the server's default limit is 2 MiB


class ServiceError(Exception):
    """A 4xx/5xx answer; ``code`` is the server's machine-readable error code."""

    def __init__(self, code: str, message: str, status: int) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.code, self.message, self.status = code, message, status


class BudgetExceeded(ServiceError):
    """409 budget_exceeded: the batch would overspend the run's budget; nothing was stored."""


class DuplicatePixel(ServiceError):
    """409 duplicate_pixel: a pixel was already asked in this run; nothing was stored.

    ``maybe_stored``: met on a retry after a lost response, so the first attempt may have
    stored the whole batch (whose ids are then unknown).
    """

    maybe_stored: bool = False


ERRORS_BY_CODE: dict[str, type[ServiceError]] = {
    "budget_exceeded": BudgetExceeded,
    "duplicate_pixel": DuplicatePixel,
}


def error_from_response(response: httpx.Response) -> ServiceError:
    """Map an error response to a typed ``ServiceError`` (any body, JSON or not)."""
    code, message = f"http_{response.status_code}", response.reason_phrase or "error"
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        code = str(body["error"].get("code", code))
        message = str(body["error"].get("message", message))
    elif isinstance(body, dict) and "detail" in body:
        message = str(body["detail"])
    elif response.text:
        message = response.text[:500]
    return ERRORS_BY_CODE.get(code, ServiceError)(code, message, response.status_code)


def encode_png(array: np.ndarray) -> str:
    """Base64 PNG of a uint8 ``(H, W, 3)`` or ``(H, W)`` array."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array, dtype=np.uint8)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


class ServiceClient:
    """Synchronous client; one instance per process (it keeps one connection pool)."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float = 30.0,
        retries: int = 10,
        backoff: float = 0.2,
        max_backoff: float = 5.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        # defaults: 0.2, 0.4, ... capped at 5 s, 10 retries = about 31 s of waiting, long
        # enough to ride out a server restart (kill, start, migrate check, ready)
        self.retries, self.backoff, self.max_backoff = retries, backoff, max_backoff

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
    ) -> Any:
        """Send ``method path`` (below ``/api/v1``), retrying per the module's policy.

        ``safe=False`` retries only when the connection could not be made. Returns the JSON
        body; raises ``ServiceError`` (or a subclass) for an error status.
        """
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            try:
                response = self._http.request(method, API + path, json=json, params=params)
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
            delay = self._delay(attempt)
            log.warning(
                "%s %s: %s; retry %d of %d in %.1f s",
                method,
                path,
                reason,
                attempt + 1,
                self.retries,
                delay,
            )
            time.sleep(delay)
        raise AssertionError("unreachable")

    def _delay(self, attempt: int) -> float:
        return min(self.backoff * 2**attempt, self.max_backoff)

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
    ) -> dict:
        """Create a run; ``classes`` are ``{"id", "name", "color"}`` dicts. Returns RunOut."""
        body = {
            "name": name,
            "classes": list(classes),
            "target_pixels": target_pixels,
            "budget_rate": budget_rate,
            "strategy": strategy,
            "config": config or {},
        }
        return self.request("POST", "/runs", json=body, safe=False)

    def list_runs(self) -> list[dict]:
        return self.request("GET", "/runs")

    def get_run(self, run_id: int) -> dict:
        return self.request("GET", f"/runs/{run_id}")

    def finish_run(self, run_id: int) -> dict:
        return self.request("PATCH", f"/runs/{run_id}", json={"status": "finished"})

    # -- images ----------------------------------------------------------------------------
    def register_images(
        self,
        run_id: int,
        items: Sequence[tuple[str, np.ndarray]],
        max_bytes: int = IMAGE_BYTES_PER_POST,
    ) -> dict[str, int]:
        """Upload ``(key, uint8 (H, W, 3) array)`` pairs; returns key -> image id.

        Sent in chunks of at most ``max_bytes`` of base64 PNG (the server bounds request
        bodies, 2 MiB by default; a larger single image goes alone and may meet
        ``413 payload_too_large``). Idempotent: keys already in the run return their ids.
        """
        ids: dict[str, int] = {}
        chunk: list[dict] = []
        size = 0
        for key, arr in items:
            image = {
                "key": key,
                "width": int(arr.shape[1]),
                "height": int(arr.shape[0]),
                "png_base64": encode_png(arr),
            }
            if chunk and size + len(image["png_base64"]) > max_bytes:
                ids.update(self._post_images(run_id, chunk))
                chunk, size = [], 0
            chunk.append(image)
            size += len(image["png_base64"])
        if chunk:
            ids.update(self._post_images(run_id, chunk))
        return ids

    def _post_images(self, run_id: int, images: list[dict]) -> dict[str, int]:
        out = self.request("POST", f"/runs/{run_id}/images", json={"images": images})
        return {row["key"]: row["id"] for row in out["images"]}

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
        for start in range(0, len(queries), MAX_QUERIES_PER_POST):
            ids += self._post_query_chunk(
                run_id, list(queries[start : start + MAX_QUERIES_PER_POST])
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
        time.sleep(self.backoff)
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
        """All answers with id > ``after``, paging until an empty page."""
        while True:
            answers, cursor = self.answers_since(run_id, after, limit)
            if not answers:
                return
            after = max(cursor, int(answers[-1]["id"]))
            yield from answers

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
        in flight in the run (``budget.reserved == 0``) or ``timeout``; returns the cursor."""
        deadline = time.monotonic() + timeout
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
            time.sleep(poll)

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
