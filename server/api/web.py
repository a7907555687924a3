"""The web UI's static files, mounted at ``/`` below every API route."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from starlette.routing import BaseRoute, Match, Mount
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

API_PREFIX = "/api/"


class WebMount(Mount):
    """Static files at ``/`` that never answer for the API: a path under ``/api/``, or one
    that an API route serves with another method, falls through to the router, which answers
    404 (no such route) or 405 with ``Allow`` in the JSON envelope instead of the file
    server's 404 page. ``routes`` gives the app's routes (read at request time)."""

    def __init__(self, directory: Path, routes: Callable[[], Sequence[BaseRoute]]) -> None:
        super().__init__("/", app=StaticFiles(directory=directory, html=True), name="web")
        self._routes = routes

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] == "http" and self._is_api(scope):
            return Match.NONE, {}
        return super().matches(scope)

    def _is_api(self, scope: Scope) -> bool:
        path = scope["path"]
        if path.startswith(API_PREFIX) or path == API_PREFIX.rstrip("/"):
            return True
        return any(
            route is not self and route.matches(scope)[0] is Match.PARTIAL
            for route in self._routes()
        )
