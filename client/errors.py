"""The service's error responses as typed exceptions (the JSON envelope of docs/api.md)."""

from __future__ import annotations

import httpx


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
