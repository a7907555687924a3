"""Domain exceptions and the one place that maps them (and framework errors) to JSON."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Mount


class DomainError(Exception):
    status = 400
    code = "bad_request"
    message = "The request was refused."

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.message)
        self.message = message or self.message


class Unauthorized(DomainError):
    status, code, message = 401, "unauthorized", "A valid bearer token is required."


class Forbidden(DomainError):
    status, code, message = 403, "forbidden", "Your role may not do this."


class NotYourAnswer(Forbidden):
    code, message = "not_your_answer", "Only the answer's author or an admin may correct it."


class NotFound(DomainError):
    status, code, message = 404, "not_found", "No such resource."


class RunNotFound(NotFound):
    code, message = "run_not_found", "No such run."


class ImageNotFound(NotFound):
    code, message = "image_not_found", "No such image."


class QueryNotFound(NotFound):
    code, message = "query_not_found", "No such query."


class BudgetExceeded(DomainError):
    status, code, message = 409, "budget_exceeded", "The batch would overspend the run budget."


class DuplicatePixel(DomainError):
    status, code, message = 409, "duplicate_pixel", "A pixel was already asked in this run."


class RunFinished(DomainError):
    status, code, message = 409, "run_finished", "The run is finished."


class NotLeased(DomainError):
    status, code, message = 409, "not_leased", "You do not hold a lease on this query."


class AlreadyAnswered(DomainError):
    status, code, message = 409, "already_answered", "This query is already answered."


class NothingToUndo(DomainError):
    status, code, message = 409, "nothing_to_undo", "You have no answer on this query to undo."


class LeaseExpired(DomainError):
    status, code, message = 410, "lease_expired", "Your lease on this query has expired."


class NotWithdrawable(DomainError):
    status, code, message = 409, "not_withdrawable", "None of these queries can be withdrawn."


class QueryWithdrawn(DomainError):
    status, code, message = 410, "query_withdrawn", "The trainer withdrew this query."


class UnknownClass(DomainError):
    status, code, message = 422, "unknown_class", "The class id is not one of the run's classes."


class ReservedName(DomainError):
    status, code, message = 422, "reserved_name", "This name is reserved."


class BadScope(DomainError):
    status, code, message = 422, "bad_scope", "The token's runs are not valid."


class UnknownImage(DomainError):
    status, code, message = 422, "unknown_image", "The image is not registered in this run."


class PixelOutOfRange(DomainError):
    status, code, message = 422, "pixel_out_of_range", "The pixel lies outside the image."


class InvalidImage(DomainError):
    status, code, message = 422, "invalid_image", "The image is not a PNG of the stated size."


class BadRequest(DomainError):
    status, code, message = 400, "bad_request", "The request is malformed."


class CropTooLarge(DomainError):
    status, code, message = 422, "crop_too_large", "The crop asked for is too large."


class ImageTooLarge(DomainError):
    status, code, message = 413, "image_too_large", "The image has too many pixels."


def error_response(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def _validation_message(exc: RequestValidationError) -> tuple[int, str, str]:
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        return 400, "malformed_json", "The request body is not valid JSON."
    first = errors[0] if errors else {}
    loc = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
    return 422, "validation_error", f"{loc or 'request'}: {first.get('msg', 'invalid value')}"


_HTTP_CODES = {
    400: ("malformed_json", "The request body cannot be parsed."),  # e.g. not UTF-8
    404: ("not_found", "No such route."),
    405: ("method_not_allowed", "This method is not allowed on this route."),
    413: ("payload_too_large", "The request body is too large."),
    415: ("unsupported_media_type", "Send the body as application/json."),
}


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


def _allowed(request: Request) -> list[str]:
    """Every method that some API route serves at the request's path (Starlette's own 405
    names only the first route that matched the path: ``POST`` for ``HEAD /api/v1/runs``)."""
    routes = [r for r in request.app.router.routes if not isinstance(r, Mount)]
    return [
        method
        for method in _METHODS
        if any(r.matches({**request.scope, "method": method})[0] is Match.FULL for r in routes)
    ]


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def _domain(_req: Request, exc: DomainError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message)

    @app.exception_handler(RequestValidationError)
    async def _validation(_req: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(*_validation_message(exc))

    @app.exception_handler(Exception)
    async def _internal(_req: Request, _exc: Exception) -> JSONResponse:
        # Starlette's outermost middleware calls this, then re-raises for the server's log
        # (with the traceback): the client gets the envelope, never a plain-text 500
        return error_response(
            500, "internal_error", "The server failed on this request; it is logged. Retry later."
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(req: Request, exc: StarletteHTTPException) -> JSONResponse:
        code, message = _HTTP_CODES.get(exc.status_code, ("http_error", str(exc.detail)))
        response = error_response(exc.status_code, code, message)
        response.headers.update(exc.headers or {})
        if exc.status_code == 405:
            response.headers["Allow"] = ", ".join(_allowed(req))
        return response


# SQLite's "database is locked" / "database table is locked"; PostgreSQL's lock_not_available
_BUSY = ("database is locked", "database table is locked", "locknotavailable", "lock timeout")
RETRY_AFTER_S = 1


def install_busy_handlers(app: FastAPI) -> None:
    """A database lock (or a connection from the pool) that did not come in time: 503 with
    ``Retry-After``, the JSON envelope, nothing changed. Other operational errors re-raise."""

    def busy(what: str) -> JSONResponse:
        response = error_response(503, "database_busy", f"{what} Retry in a moment.")
        response.headers["Retry-After"] = str(RETRY_AFTER_S)
        return response

    @app.exception_handler(OperationalError)
    async def _locked(_req: Request, exc: OperationalError) -> JSONResponse:
        text = f"{type(exc.orig).__name__} {exc.orig}".lower()
        if not any(b in text for b in _BUSY):
            raise exc
        return busy("The database is busy with other writers.")

    @app.exception_handler(PoolTimeout)
    async def _pool(_req: Request, _exc: PoolTimeout) -> JSONResponse:
        return busy("Every database connection is in use.")
