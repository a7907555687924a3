"""The HTTP/1.1 protocol of ``adamcu-server``: uvicorn's httptools protocol with a bounded
request head and the JSON envelope on the errors that it answers itself, before any app code
runs (uvicorn's own answer to a malformed request is a plain-text 400)."""

from __future__ import annotations

import json
from functools import cache

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from server.settings import Settings

NAME = "server.api.protocol:EnvelopeHttpToolsProtocol"  # uvicorn's ``http`` option


@cache
def head_limit() -> int:
    """``ADAMCU_MAX_HEADER_BYTES``, read once per process."""
    return Settings().max_header_bytes


class EnvelopeHttpToolsProtocol(HttpToolsProtocol):
    """Counts the bytes of each request's head (request line and headers) as they arrive:
    past ``head_limit()`` the connection gets 431 and is closed, the head never buffered
    whole. A request httptools cannot parse gets the envelope's 400."""

    def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        super().__init__(*args, **kwargs)
        self._in_head, self._head_bytes = True, 0

    def data_received(self, data: bytes) -> None:
        if self._in_head:  # every byte read before the headers end is head
            self._head_bytes += len(data)
        super().data_received(data)
        if self._in_head and self._head_bytes > head_limit() and not self.transport.is_closing():
            message = f"The request line and headers exceed {head_limit()} bytes."
            self._reply(431, "headers_too_large", message)

    def on_headers_complete(self) -> None:
        self._in_head, self._head_bytes = False, 0
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._in_head = True  # the next request on this connection starts with its head
        super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        self._reply(400, "bad_request", "The request is not valid HTTP/1.1.")

    def _reply(self, status: int, code: str, message: str) -> None:
        body = json.dumps({"error": {"code": code, "message": message}}).encode()
        head = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        head += [
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n\r\n",
        ]
        self.transport.write(b"".join([*head, body]))
        self.transport.close()
