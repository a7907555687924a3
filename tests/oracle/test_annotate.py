import json
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from client.api import ServiceClient
from client.retry import RetryPolicy
from oracle.annotate import OracleConfig, run_oracle
from oracle.cli import parse_args
from oracle.ground_truth import GroundTruth, mask_path

MASK = np.array([[0, 1, 2], [3, 255, 4]], dtype=np.uint8)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    (tmp_path / "tgt" / "labels").mkdir(parents=True)
    Image.fromarray(MASK).save(tmp_path / "tgt" / "labels" / "a.png")
    return tmp_path


class FakeAnnotatorApi:
    """Hands out the queries once; refuses answers for ids in ``expired`` with 410."""

    def __init__(self, pixels: list[tuple[int, int]], expired: set[int] = frozenset()) -> None:
        self.queue = [
            {"id": i + 1, "image_id": 7, "y": y, "x": x} for i, (y, x) in enumerate(pixels)
        ]
        self.expired, self.answers, self.skips, self.batches = expired, {}, [], 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix("/api/v1")
        body = json.loads(request.content) if request.content else {}
        if path == "/runs/1":
            return httpx.Response(
                200, json={"id": 1, "status": "finished", "classes": [{"id": c} for c in range(5)]}
            )
        if path == "/runs/1/images":
            return httpx.Response(200, json={"images": [{"id": 7, "key": "tgt/a"}]})
        if path == "/runs/1/claims":
            claimed, self.queue = self.queue[: body["n"]], self.queue[body["n"] :]
            return httpx.Response(200, json={"queries": claimed})
        if path == "/runs/1/answers":
            self.batches += 1
            if any(a["query_id"] in self.expired for a in body["answers"]):
                return gone()
            self.answers.update({a["query_id"]: a["class_id"] for a in body["answers"]})
            return httpx.Response(200, json={"answers": []})
        qid = int(path.split("/")[2])
        if path.endswith("/skip"):
            self.skips.append(qid)
            return httpx.Response(200, json={})
        if qid in self.expired:
            return gone()
        self.answers[qid] = body["class_id"]
        return httpx.Response(200, json={})


def gone() -> httpx.Response:
    return httpx.Response(410, json={"error": {"code": "lease_expired", "message": "late"}})


def run(api: FakeAnnotatorApi, data: Path, **kw):
    cfg = OracleConfig(
        server="http://svc",
        token="t",
        data=data,
        run=1,
        batch=4,
        idle_exit=0.0,
        seed=0,
        **{"poll": 0.0, **kw},
    )
    client = ServiceClient(
        "http://svc", "t", transport=httpx.MockTransport(api), retry=RetryPolicy(base_delay=0)
    )
    return run_oracle(client, cfg, threading.Event())


PIXELS = [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]


def test_answers_from_ground_truth_and_skips_void(data: Path) -> None:
    api = FakeAnnotatorApi(PIXELS)
    summary = run(api, data)
    assert api.answers == {1: 0, 2: 1, 3: 2, 4: 3, 6: 4}
    assert api.skips == [5]
    assert (summary.answered, summary.skipped, summary.refused) == (5, 1, 0)
    assert "answered=5 skipped=1 refused=0" in summary.line()


def test_refused_batch_falls_back_to_single_answers(data: Path) -> None:
    api = FakeAnnotatorApi(PIXELS, expired={2})
    summary = run(api, data)
    assert api.answers == {1: 0, 3: 2, 4: 3, 6: 4}
    assert (summary.answered, summary.skipped, summary.refused) == (4, 1, 1)


def test_max_answers_stops_early(data: Path) -> None:
    api = FakeAnnotatorApi(PIXELS)
    summary = run(api, data, max_answers=2)
    assert summary.answered == 2 and len(api.queue) == 4


def test_stop_event_set_before_start_does_nothing(data: Path) -> None:
    api = FakeAnnotatorApi(PIXELS)
    cfg = OracleConfig(server="http://svc", token="t", data=data, run=1)
    client = ServiceClient("http://svc", "t", transport=httpx.MockTransport(api))
    stop = threading.Event()
    stop.set()
    assert run_oracle(client, cfg, stop).answered == 0 and len(api.queue) == 6


def test_ground_truth_reads_masks_and_refreshes_unknown_ids(data: Path) -> None:
    listings = [{8: "tgt/a"}, {7: "tgt/a", 8: "tgt/a"}]
    calls = []

    def list_images() -> dict[int, str]:
        calls.append(1)
        return listings[min(len(calls), 2) - 1]

    truth = GroundTruth(data, list_images)
    queries = [
        {"image_id": 8, "y": 0, "x": 1},
        {"image_id": 7, "y": 1, "x": 2},
        {"image_id": 7, "y": 1, "x": 1},
    ]
    np.testing.assert_array_equal(truth.values(queries), [1, 4, 255])
    assert len(calls) == 2  # registered after the first listing: listed again once
    with pytest.raises(KeyError):
        truth.values([{"image_id": 9, "y": 0, "x": 0}])
    with pytest.raises(ValueError, match="outside"):
        truth.values([{"image_id": 7, "y": 2, "x": 0}])
    assert mask_path(Path("/r"), "target-train/aachen/x") == Path(
        "/r/target-train/labels/aachen/x.png"
    )
    with pytest.raises(ValueError):
        mask_path(Path("/r"), "nosplit")


def test_cli_flags(data: Path) -> None:
    cfg = parse_args(
        [
            "--server",
            "http://h:1",
            "--token",
            "t",
            "--run",
            "3",
            "--data",
            str(data),
            "--batch",
            "8",
            "--noise",
            "0.1",
            "--delay-ms",
            "5",
            "--lease",
            "30",
            "--seed",
            "4",
            "--idle-exit",
            "2",
            "--max-answers",
            "100",
        ]
    )
    assert (
        cfg.server,
        cfg.run,
        cfg.batch,
        cfg.noise,
        cfg.delay_ms,
        cfg.lease,
        cfg.seed,
        cfg.idle_exit,
        cfg.max_answers,
    ) == ("http://h:1", 3, 8, 0.1, 5, 30, 4, 2, 100)
    with pytest.raises(SystemExit):
        parse_args(["--token", "t", "--data", str(data), "--batch", "501"])


def test_waiting_claims_ask_the_server_to_wait_and_claim_again_at_once(data: Path) -> None:
    """With ``wait`` each claim carries ``wait_seconds`` (the server holds an empty one until
    the run has new queries) and an empty claim of an active run is followed by the next claim
    at once, not after ``poll`` seconds of the oracle's own."""
    api = FakeAnnotatorApi(PIXELS[:2])
    bodies: list[dict] = []
    empty = {"left": 2}  # the first two claims find nothing (the server's wait ran out)

    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix("/api/v1")
        if path == "/runs/1/claims":
            bodies.append(json.loads(request.content))
            if empty["left"]:
                empty["left"] -= 1
                return httpx.Response(200, json={"queries": []})
            time.sleep(0.3)  # the server held this claim until the queries came
        if path == "/runs/1" and len(api.answers) < 2:
            return httpx.Response(
                200, json={"id": 1, "status": "active", "classes": [{"id": c} for c in range(5)]}
            )
        return api(request)

    start = time.monotonic()
    summary = run(handler, data, wait=2.0, poll=30.0)
    assert summary.answered == 2 and api.answers == {1: 0, 2: 1}
    assert summary.lead_ms_total < 2 * 300  # the lead time leaves the server's wait out
    assert all(b["wait_seconds"] == 2.0 for b in bodies) and len(bodies) >= 3
    assert time.monotonic() - start < 10.0  # no 30 s poll between the empty claims


def test_wait_is_checked(data: Path) -> None:
    args = ["--server", "http://svc", "--token", "t", "--data", str(data)]
    assert parse_args([*args, "--wait", "2"]).wait == 2.0
    for bad in ("-1", "11"):
        with pytest.raises(SystemExit):
            parse_args([*args, "--wait", bad])
