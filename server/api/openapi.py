"""The OpenAPI document as clients read it: every 4xx the server sends, with its real body.

Routes declare their domain refusals (404, 409, 410, a 400 or 422 of their own) with
``responses=errors(...)``; ``document_errors`` adds the refusals every route of a kind can
send: 401 where a token is needed, 403 where the role is limited, 422 for bad parameters, and
400/413/415 for JSON bodies. FastAPI's ``{"detail": ...}`` shape, which this server never
sends, is replaced by ``ErrorOut`` (``{"error": {"code", "message"}}``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute

from server.db import get_db
from server.schemas_reports import ErrorOut

ALL_ROLES = {"trainer", "annotator", "viewer"}
DESCRIPTIONS = {
    400: "Malformed request (bad JSON, a contradiction in the body)",
    401: "No valid bearer token",
    403: "The token's role may not do this",
    404: "No such run, image or query",
    409: "Refused in the current state (budget, duplicate pixel, finished run, lease)",
    410: "The lease on this query has expired",
    413: "The body is larger than ADAMCU_MAX_BODY_BYTES",
    415: "The body is not application/json",
    422: "A value is invalid",
    500: "The server failed on this request (logged with its request id); nothing was changed",
    503: "The database is busy or out of connections; retry after Retry-After seconds",
}
_REF = {"$ref": "#/components/schemas/ErrorOut"}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route decorator: these statuses answer with ``ErrorOut``."""
    return {s: {"model": ErrorOut, "description": DESCRIPTIONS[s]} for s in statuses}


def _calls(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    for sub in dependant.dependencies:
        if sub.call is not None:
            yield sub.call
        yield from _calls(sub)


def _params(dependant: Dependant) -> bool:
    if dependant.path_params or dependant.query_params or dependant.header_params:
        return True
    return any(_params(sub) for sub in dependant.dependencies)


def common_statuses(route: APIRoute) -> set[int]:
    """The refusals that follow from the route's dependencies, body and parameters."""
    statuses: set[int] = set()
    roles = [getattr(call, "roles", None) for call in _calls(route.dependant)]
    roles = [set(r) for r in roles if r is not None]
    if roles:
        statuses.add(401)
        if any(not ALL_ROLES <= r for r in roles):
            statuses.add(403)
    if route.body_field is not None:
        statuses |= {400, 413, 415, 422}
    if _params(route.dependant):
        statuses.add(422)
    if any(call is get_db for call in _calls(route.dependant)):
        statuses.add(503)  # install_busy_handlers
    return statuses | {500}  # install_error_handlers: any failure, as the envelope


def _envelope(response: dict[str, Any], status: int) -> dict[str, Any]:
    response["description"] = DESCRIPTIONS.get(status, response.get("description", ""))
    response["content"] = {"application/json": {"schema": dict(_REF)}}
    return response


def document_errors(schema: dict[str, Any], routes: list[Any]) -> None:
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    model = ErrorOut.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(model.pop("$defs", {}))
    components["ErrorOut"] = model
    for route in routes:
        if not isinstance(route, APIRoute) or not route.include_in_schema:
            continue
        for method in route.methods:
            responses = schema["paths"][route.path_format][method.lower()]["responses"]
            own = {int(s) for s in responses if s.startswith("4")}
            for status in common_statuses(route) | own:
                _envelope(responses.setdefault(str(status), {}), status)
    for unused in ("HTTPValidationError", "ValidationError"):
        components.pop(unused, None)


def install_openapi(app: FastAPI, routers: list[APIRouter]) -> None:
    """``routers``: those the app includes without a prefix of its own (their routes carry
    their full paths; the app's own route list is internal to FastAPI in newer versions)."""
    routes = [route for router in routers for route in router.routes]

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            document_errors(schema, routes)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
