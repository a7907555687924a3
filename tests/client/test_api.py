import hashlib
import io
import json
import random

import httpx
import numpy as np
import pytest
from PIL import Image

from client.api import (
    BudgetExceeded,
    DuplicatePixel,
    ServiceClient,
    ServiceError,
)
from client.retry import RetryPolicy


def make_client(handler, **kw) -> ServiceClient:
    kw.setdefault("retry", RetryPolicy(base_delay=0.0))
    return ServiceClient("http://svc/", "tok", transport=httpx.MockTransport(handler), **kw)


def error(status: int, code: str, message: str = "no") -> httpx.Response:
    return httpx.Response(status, json={"error": {"code": code, "message": message}})


@pytest.mark.parametrize(
    ("status", "code", "kind"),
    [
        (409, "budget_exceeded", BudgetExceeded),
        (409, "duplicate_pixel", DuplicatePixel),
        (404, "run_not_found", ServiceError),
        (410, "lease_expired", ServiceError),
    ],
)
def test_error_body_maps_to_typed_exception(status, code, kind) -> None:
    client = make_client(lambda r: error(status, code, "a human sentence"))
    with pytest.raises(kind) as info:
        client.post_queries(1, [{"image_id": 1, "y": 0, "x": 0}])
    assert type(info.value) is kind
    assert (info.value.code, info.value.message, info.value.status) == (
        code,
        "a human sentence",
        status,
    )


def test_non_json_error_still_gives_service_error() -> None:
    client = make_client(lambda r: httpx.Response(500, text="boom"))
    with pytest.raises(ServiceError) as info:
        client.me()
    assert (info.value.status, info.value.code, info.value.message) == (500, "http_500", "boom")


def test_sends_token_and_api_prefix() -> None:
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.url.path, request.headers["authorization"]))
        return httpx.Response(200, json={"id": 1, "role": "trainer", "name": "t"})

    assert make_client(handler).me()["role"] == "trainer"
    assert seen == [("/api/v1/me", "Bearer tok")]


def flaky(failures: list, final: httpx.Response):
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) <= len(failures):
            failure = failures[len(calls) - 1]
            if isinstance(failure, Exception):
                raise failure
            return failure
        return final

    return handler, calls


BUDGET = {"expected": 10, "reserved": 0, "answered": 0, "skipped": 0, "remaining": 10, "groups": {}}


def test_connection_error_then_success_is_retried() -> None:
    handler, calls = flaky([httpx.ConnectError("refused")], httpx.Response(200, json=BUDGET))
    assert make_client(handler).budget(1) == BUDGET
    assert len(calls) == 2


def test_503_and_read_errors_on_reads_are_retried_until_retries_run_out() -> None:
    handler, calls = flaky(
        [httpx.Response(503), httpx.ReadTimeout("slow")], httpx.Response(200, json=BUDGET)
    )
    assert make_client(handler).budget(1) == BUDGET
    handler, calls = flaky([httpx.Response(502)] * 10, httpx.Response(200, json=BUDGET))
    with pytest.raises(ServiceError) as info:
        make_client(handler, retry=RetryPolicy(max_tries=3, base_delay=0)).budget(1)
    assert info.value.status == 502 and len(calls) == 3


def test_non_idempotent_post_retried_only_when_never_sent() -> None:
    metric = {"id": 1, "iteration": 5, "miou": 40.0}
    handler, calls = flaky([httpx.ConnectError("refused")], httpx.Response(201, json=metric))
    assert make_client(handler).post_metrics(1, 5, 40.0)["id"] == 1
    assert len(calls) == 2
    handler, calls = flaky([httpx.ReadTimeout("lost")], httpx.Response(201, json=metric))
    with pytest.raises(httpx.ReadTimeout):
        make_client(handler).post_metrics(1, 5, 40.0)
    assert len(calls) == 1


def test_post_queries_lost_response_then_duplicate_is_flagged_maybe_stored() -> None:
    handler, calls = flaky(
        [httpx.ReadTimeout("stored, but the response was lost")], error(409, "duplicate_pixel")
    )
    with pytest.raises(DuplicatePixel) as info:
        make_client(handler).post_queries(1, [{"image_id": 3, "y": 1, "x": 2}])
    assert info.value.maybe_stored and len(calls) == 2


def test_post_queries_503_then_success_is_retried() -> None:
    handler, calls = flaky([httpx.Response(503)], httpx.Response(201, json={"ids": [4]}))
    assert make_client(handler).post_queries(1, [{"image_id": 3, "y": 1, "x": 2}]) == [4]
    assert len(calls) == 2


def test_post_queries_genuine_duplicate_is_not_retried() -> None:
    handler, calls = flaky([], error(409, "duplicate_pixel"))
    with pytest.raises(DuplicatePixel) as info:
        make_client(handler).post_queries(1, [{"image_id": 3, "y": 1, "x": 2}])
    assert len(calls) == 1 and not info.value.maybe_stored


def test_post_queries_chunks_at_ten_thousand() -> None:
    sizes = []

    def handler(request: httpx.Request) -> httpx.Response:
        n = len(json.loads(request.content)["queries"])
        start = sum(sizes)
        sizes.append(n)
        return httpx.Response(201, json={"ids": list(range(start, start + n))})

    queries = [{"image_id": 1, "y": i // 100, "x": i % 100} for i in range(12_345)]
    assert make_client(handler).post_queries(1, queries) == list(range(12_345))
    assert sizes == [10_000, 2_345]


def test_register_images_streams_raw_pngs_then_registers_references() -> None:
    uploads, registered = [], []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v1/uploads":
            assert request.headers["content-type"] == "image/png"
            uploads.append(request.content)
            sha = hashlib.sha256(request.content).hexdigest()
            body = {"dataset": "uploads", "path": f"{sha[:2]}/{sha}.png", "sha256": sha}
            return httpx.Response(201, json={**body, "bytes": 1, "width": 6, "height": 4})
        images = json.loads(request.content)["images"]
        registered.append(images)
        rows = [
            {"id": 100 + i, "key": im["key"], "width": 6, "height": 4}
            for i, im in enumerate(images)
        ]
        return httpx.Response(201, json={"images": rows})

    arr = np.zeros((4, 6, 3), dtype=np.uint8)
    arr[1, 2] = (10, 20, 30)
    items = [(f"target-train/{i}", arr) for i in range(5)]
    ids = make_client(handler).register_images(7, items)
    assert ids == {f"target-train/{i}": 100 + i for i in range(5)}
    assert len(uploads) == 5 and [len(c) for c in registered] == [5]
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(uploads[0]))), arr)
    first = registered[0][0]
    assert first["sha256"] == hashlib.sha256(uploads[0]).hexdigest()
    assert "png_base64" not in first and first["dataset"] == "uploads"


def answer(aid: int, qid: int, cls: int = 1, pixel=(1, 0, 0)) -> dict:
    return {
        "id": aid,
        "query_id": qid,
        "image_id": pixel[0],
        "y": pixel[1],
        "x": pixel[2],
        "class_id": cls,
    }


def test_iter_answers_pages_until_a_page_is_not_full() -> None:
    pages = {0: [answer(1, 1), answer(2, 2)], 2: [answer(3, 3)], 3: []}
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        after = int(request.url.params["after"])
        seen.append((after, int(request.url.params["limit"])))
        page = pages[after]
        return httpx.Response(
            200, json={"answers": page, "cursor": page[-1]["id"] if page else after}
        )

    client = make_client(handler)
    assert [a["id"] for a in client.iter_answers_since(5, 0, limit=2)] == [1, 2, 3]
    assert seen == [(0, 2), (2, 2)]  # the short page ends it: no request for an empty one
    seen.clear()
    pages[2] = [answer(3, 3), answer(4, 4)]
    pages[4] = []
    assert [a["id"] for a in client.iter_answers_since(5, 0, limit=2)] == [1, 2, 3, 4]
    assert seen == [(0, 2), (2, 2), (4, 2)]  # full pages: one more
    assert client.answers_since(5, 3) == ([], 3)


def test_wait_for_answers_stops_when_all_arrive_and_keeps_latest() -> None:
    arrivals = [[answer(1, 10, 1)], [], [answer(2, 99), answer(3, 11, 2), answer(4, 10, 3)]]
    state = {"polls": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/budget"):
            state["polls"] += 1
            return httpx.Response(200, json={**BUDGET, "reserved": 2})
        after = int(request.url.params["after"])
        page = [a for batch in arrivals[: state["polls"] + 1] for a in batch if a["id"] > after]
        return httpx.Response(
            200, json={"answers": page, "cursor": page[-1]["id"] if page else after}
        )

    got = make_client(handler).wait_for_answers(1, {10, 11}, timeout=5, poll=0)
    assert sorted((a["query_id"], a["class_id"]) for a in got) == [(10, 3), (11, 2)]


def test_wait_for_answers_returns_partial_when_nothing_is_in_flight_or_on_timeout() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/budget"):
            return httpx.Response(200, json={**BUDGET, "reserved": reserved})
        after = int(request.url.params["after"])
        page = [answer(1, 10)] if after < 1 else []
        return httpx.Response(200, json={"answers": page, "cursor": max(after, 1)})

    reserved = 0  # the other query was skipped
    got = make_client(handler).wait_for_answers(1, {10, 11}, timeout=5, poll=0)
    assert [a["query_id"] for a in got] == [10]
    reserved = 1  # still leased somewhere: wait out the timeout
    got = make_client(handler).wait_for_answers(1, {10, 11}, timeout=0.05, poll=0.01)
    assert [a["query_id"] for a in got] == [10]


def test_poll_answers_looks_soon_then_backs_off_to_the_poll(monkeypatch) -> None:
    """An answer that comes at once (a simulated oracle) is read within 10 ms, not a whole
    ``poll`` later; the waits double up to ``poll``."""
    slept: list[float] = []
    monkeypatch.setattr("client.api.time.sleep", slept.append)

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/budget"):
            return httpx.Response(200, json={**BUDGET, "reserved": 1})
        return httpx.Response(200, json={"answers": [], "cursor": 0})

    done = lambda: len(slept) >= 7  # noqa: E731
    make_client(handler).poll_answers(1, lambda a: None, done, timeout=60, poll=0.2)
    assert slept == pytest.approx([0.01, 0.02, 0.04, 0.08, 0.16, 0.2, 0.2])


def test_retries_wait_per_the_policy_with_jitter(monkeypatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr("client.api.time.sleep", slept.append)
    policy = RetryPolicy(max_tries=4, base_delay=1.0, max_delay=3.0, jitter="equal")
    waits = []
    for seed in (1, 2):
        handler, calls = flaky([httpx.Response(503)] * 3, httpx.Response(200, json=BUDGET))
        client = make_client(handler, retry=policy, rng=random.Random(seed))
        assert client.budget(1) == BUDGET and len(calls) == 4
        waits.append(list(slept))
        slept.clear()
    for w in waits:
        assert [c / 2 <= d <= c for d, c in zip(w, (1.0, 2.0, 3.0), strict=True)] == [True] * 3
    assert waits[0] != waits[1]
