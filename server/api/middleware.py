"""Pure ASGI middleware: request ids, metrics and the access line; header and body limits
(431, 413, 415)."""

from __future__ import annotations

import logging
import time

from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server import logs
from server.api.metrics import observe
from server.errors import error_response

access = logging.getLogger("server.access")

_BODY_METHODS = {b"POST", b"PUT", b"PATCH"}


UPLOAD_PATH = "/api/v1/uploads"  # raw image/png bodies, up to ADAMCU_MAX_UPLOAD_BYTES
UPLOAD_TYPES = (b"image/png", b"application/octet-stream")


def _json(ctype: bytes) -> bool:
    return ctype == b"application/json" or ctype.endswith(b"+json")


class BodyLimitMiddleware:
    """Bodies are JSON of at most ``max_bytes``, except at ``UPLOAD_PATH``: a raw PNG of at
    most ``upload_bytes``. Refused before the route runs: 413 by Content-Length, 415 by type;
    a body that grows past its limit while streaming ends in 413. Headers (names and values)
    over ``header_bytes`` in all: 431 (``adamcu-server``'s protocol refuses them earlier, as
    they arrive; this holds under any ASGI server)."""

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        upload_bytes: int | None = None,
        header_bytes: int | None = None,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.upload_bytes = upload_bytes if upload_bytes is not None else max_bytes
        self.header_bytes = header_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.header_bytes and sum(len(k) + len(v) for k, v in scope["headers"]) > (
            self.header_bytes
        ):
            message = f"The request's headers exceed {self.header_bytes} bytes."
            await error_response(431, "headers_too_large", message)(scope, receive, send)
            return
        if scope["method"].encode() not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return
        upload = scope["path"] == UPLOAD_PATH
        limit = self.upload_bytes if upload else self.max_bytes
        headers = dict(scope["headers"])
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            too_big = error_response(413, "payload_too_large", f"The body exceeds {limit} bytes.")
            await too_big(scope, receive, send)
            return
        ctype = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        has_body = length not in (None, b"0") or b"transfer-encoding" in headers
        if has_body and not (ctype in UPLOAD_TYPES if upload else _json(ctype)):
            wanted = "image/png" if upload else "application/json"
            wrong = error_response(415, "unsupported_media_type", f"Send the body as {wanted}.")
            await wrong(scope, receive, send)
            return
        await self.app(scope, self._bounded(receive, limit), send)

    def _bounded(self, receive: Receive, limit: int) -> Receive:
        seen = 0

        async def bounded() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise HTTPException(413)
            return message

        return bounded


class RequestContextMiddleware:
    """Outermost: a request id (``X-Request-ID`` in, or a fresh one; echoed out) for the logs,
    the request's count and latency for ``/metrics``, and one access line per request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        header = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        rid = logs.new_request_id(header)
        token = logs.request_id.set(rid)
        start, status = time.perf_counter(), 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)["X-Request-ID"] = rid
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - start
            route = getattr(scope.get("route"), "path", None) or _unrouted(scope)
            observe(scope["method"], route, status, seconds)
            access.info(
                "%s %s %d",
                scope["method"],
                scope["path"],
                status,
                extra={"status": status, "route": route, "ms": round(seconds * 1000, 1)},
            )
            logs.request_id.reset(token)


def _unrouted(scope: Scope) -> str:
    """The metrics label of a request no API route took: the static web UI, or nothing."""
    return "static" if scope.get("endpoint") is not None else "unmatched"
