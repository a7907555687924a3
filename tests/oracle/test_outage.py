"""The oracle and the client ride out an outage (server restart, Redis restart) without dying."""

import json
import threading
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from client.api import ServiceClient
from client.retry import RetryPolicy
from oracle.annotate import OracleConfig, run_oracle


def test_default_retry_policy_outlasts_a_server_restart() -> None:
    retry = ServiceClient("http://svc", "t").retry
    least, most = retry.total_bounds()
    assert least >= 30 and most <= 65 and retry.cap(retry.retries) <= 5


def test_oracle_retries_claims_through_500s_and_refused_connections(tmp_path: Path) -> None:
    (tmp_path / "tgt" / "labels").mkdir(parents=True)
    Image.fromarray(np.array([[0, 1], [2, 3]], dtype=np.uint8)).save(
        tmp_path / "tgt" / "labels" / "a.png"
    )
    failures = [httpx.Response(500, text="Internal Server Error"), "refused"]
    queue = [{"id": 1, "image_id": 7, "y": 0, "x": 1}]
    answers: dict[int, int] = {}

    def api(request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix("/api/v1")
        if path == "/runs/1":
            return httpx.Response(
                200, json={"id": 1, "status": "finished", "classes": [{"id": c} for c in range(4)]}
            )
        if path == "/runs/1/images":
            return httpx.Response(200, json={"images": [{"id": 7, "key": "tgt/a"}]})
        if path == "/runs/1/claims":
            if failures:
                failure = failures.pop(0)
                if failure == "refused":
                    raise httpx.ConnectError("refused")
                return failure
            claimed, queue[:] = list(queue), []
            return httpx.Response(200, json={"queries": claimed})
        if path == "/runs/1/answers":
            body = json.loads(request.content)
            answers.update({a["query_id"]: a["class_id"] for a in body["answers"]})
            return httpx.Response(200, json={"answers": []})
        return httpx.Response(404)

    cfg = OracleConfig(
        server="http://svc",
        token="t",
        data=tmp_path,
        run=1,
        idle_exit=0.0,
        poll=0.0,
        seed=0,
        outage=10.0,
    )
    client = ServiceClient(
        "http://svc", "t", transport=httpx.MockTransport(api), retry=RetryPolicy(base_delay=0)
    )
    summary = run_oracle(client, cfg, threading.Event())
    assert answers == {1: 1} and summary.answered == 1 and not failures
