"""The session mode's client calls: paths, bodies, and finishing a finished run."""

from __future__ import annotations

import json

import httpx
import pytest

from client.api import ServiceClient, ServiceError
from client.retry import RetryPolicy


def make_client(handler) -> ServiceClient:
    return ServiceClient(
        "http://svc/",
        "tok",
        transport=httpx.MockTransport(handler),
        retry=RetryPolicy(base_delay=0.0),
    )


def test_calls_send_the_documented_requests() -> None:
    seen: list[tuple[str, str, object]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        seen.append((request.method, str(request.url), body))
        return httpx.Response(200, json={"ok": True})

    client = make_client(handler)
    client.withdraw(3, (5, 6))
    client.release([7])
    client.pace(3)
    client.pace(3, window_s=600)
    assert seen == [
        ("POST", "http://svc/api/v1/runs/3/queries/withdraw", {"ids": [5, 6]}),
        ("POST", "http://svc/api/v1/queries/release", {"ids": [7]}),
        ("GET", "http://svc/api/v1/runs/3/pace", None),
        ("GET", "http://svc/api/v1/runs/3/pace?window_s=600", None),
    ]


def test_withdraw_is_retried_after_a_lost_response() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        if len(calls) == 1:
            raise httpx.ReadError("lost")
        return httpx.Response(200, json={"withdrawn": [5], "kept": []})

    assert make_client(handler).withdraw(1, [5]) == {"withdrawn": [5], "kept": []}
    assert len(calls) == 2


def test_finish_run_takes_finishing_twice_as_done() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "PATCH":
            error = {"code": "run_finished", "message": "Run 1 is already finished."}
            return httpx.Response(409, json={"error": error})
        return httpx.Response(200, json={"id": 1, "status": "finished"})

    assert make_client(handler).finish_run(1) == {"id": 1, "status": "finished"}


def test_finish_run_raises_other_refusals() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(403, json={"error": {"code": "forbidden", "message": "no"}})

    with pytest.raises(ServiceError) as info:
        make_client(handler).finish_run(1)
    assert info.value.code == "forbidden"


def test_not_withdrawable_is_raised() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        error = {"code": "not_withdrawable", "message": "none is pending"}
        return httpx.Response(409, json={"error": error})

    with pytest.raises(ServiceError) as info:
        make_client(handler).withdraw(1, [2])
    assert (info.value.status, info.value.code) == (409, "not_withdrawable")
