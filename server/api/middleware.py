"""Pure ASGI middleware: request ids, metrics and the access line; body limits (413, 415)."""

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


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"].encode() not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            too_big = error_response(
                413, "payload_too_large", f"The body exceeds {self.max_bytes} bytes."
            )
            await too_big(scope, receive, send)
            return
        ctype = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        has_body = length not in (None, b"0") or b"transfer-encoding" in headers
        if has_body and not (ctype == b"application/json" or ctype.endswith(b"+json")):
            wrong = error_response(
                415, "unsupported_media_type", "Send the body as application/json."
            )
            await wrong(scope, receive, send)
            return
        await self.app(scope, self._bounded(receive), send)

    def _bounded(self, receive: Receive) -> Receive:
        seen = 0

        async def bounded() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
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
