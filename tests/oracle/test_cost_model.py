"""The simulated oracle in annotator seconds (issue 24): a region query's answer is the ground
truth's dominant class (void excluded, ties to the smallest id, as the trainer's in-process
oracle), and with ``--cost-model`` each answer's lead_time_ms is drawn from the one cost model
(server/schemas_cost.py) per query kind, seeded, instead of the wall time."""

import json
import threading
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from PIL import Image

from client.api import ServiceClient
from client.retry import RetryPolicy
from oracle.annotate import OracleConfig, run_oracle
from oracle.cli import parse_args
from oracle.ground_truth import GroundTruth
from oracle.simulated import LeadTimes, dominant_class
from server.schemas_cost import PIXEL_SECONDS, REGION, REGION_SECONDS, SKIP, SKIP_SECONDS
from trainer.cost import CostModel
from trainer.selection.regions import dominant_answers

MASK = np.array([[1, 1, 2], [2, 255, 255]], dtype=np.uint8)
WHOLE = {"top": 0, "left": 0, "height": 2, "width": 3, "runs": [0, 6]}  # 1 1 2 / 2 void void
ROW1 = {"top": 1, "left": 0, "height": 1, "width": 3, "runs": [0, 3]}  # 2 void void
VOID = {"top": 1, "left": 1, "height": 1, "width": 2, "runs": [0, 2]}  # void void


def test_the_dominant_class_leaves_void_out_and_breaks_ties_to_the_smallest_id() -> None:
    assert dominant_class(np.array([255, 255, 255, 4, 4, 3])) == 4  # void is no class
    assert dominant_class(np.array([7, 2, 7, 2])) == 2  # a tie: the smallest id
    assert dominant_class(np.array([255, 255])) == 255  # nothing but void: no answer
    assert dominant_class(np.array([], dtype=np.int64)) == 255


def test_the_dominant_class_is_the_trainer_in_process_oracles_answer() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        values = rng.choice([0, 1, 2, 5, 255], size=int(rng.integers(1, 12)))
        labels, _, _ = dominant_answers(
            torch.zeros(len(values), dtype=torch.long), torch.tensor(values)
        )
        assert dominant_class(values) == int(labels[0])


def test_ground_truth_answers_a_region_with_its_dominant_class(tmp_path: Path) -> None:
    (tmp_path / "tgt" / "labels").mkdir(parents=True)
    Image.fromarray(MASK).save(tmp_path / "tgt" / "labels" / "a.png")
    truth = GroundTruth(tmp_path, lambda: {7: "tgt/a"})
    queries = [
        {"image_id": 7, "y": 0, "x": 0, "region": WHOLE},
        {"image_id": 7, "y": 1, "x": 0, "region": ROW1},
        {"image_id": 7, "y": 1, "x": 1, "region": VOID},
        {"image_id": 7, "y": 0, "x": 2},  # a pixel query: its pixel
    ]
    np.testing.assert_array_equal(truth.values(queries), [1, 2, 255, 2])
    with pytest.raises(ValueError, match="passes"):
        truth.values([{"image_id": 7, "y": 1, "x": 2, "region": {**ROW1, "left": 2}}])


def test_lead_times_are_the_cost_models_means_without_spread_and_seeded_with_it() -> None:
    plain = LeadTimes()
    assert [plain.ms("pixel"), plain.ms(REGION), plain.ms(SKIP)] == [
        round(1000 * PIXEL_SECONDS),
        round(1000 * REGION_SECONDS),
        round(1000 * SKIP_SECONDS),
    ]
    draws = [LeadTimes(0.3, np.random.default_rng(5)) for _ in range(2)]
    first, again = ([d.ms(REGION) for _ in range(50)] for d in draws)
    assert first == again  # the same seed, the same times
    assert len(set(first)) > 40  # drawn, not the mean
    assert all(0.7 * 3000 <= t <= 1.3 * 3000 for t in first)
    other = [LeadTimes(0.3, np.random.default_rng(6)).ms(REGION) for _ in range(5)]
    assert other != first[:5]
    # the factor is the trainer's: the same draws give the same seconds
    seconds = CostModel(spread=0.3).charge(REGION, 50, 0, np.random.default_rng(5))
    assert sum(first) / 1000 == pytest.approx(seconds, abs=0.05)
    with pytest.raises(ValueError, match="spread"):
        LeadTimes(1.0)


class Api:
    """Hands out ``queue`` once; records each answer's class and lead time, and each skip's
    lead time (None: sent without one)."""

    def __init__(self, queue: list[dict]) -> None:
        self.queue, self.answers, self.skips = queue, {}, {}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix("/api/v1")
        body = json.loads(request.content) if request.content else {}
        if path == "/runs/1":
            classes = [{"id": c} for c in range(5)]
            return httpx.Response(200, json={"id": 1, "status": "finished", "classes": classes})
        if path == "/runs/1/images":
            return httpx.Response(200, json={"images": [{"id": 7, "key": "tgt/a"}]})
        if path == "/runs/1/claims":
            claimed, self.queue = self.queue[: body["n"]], self.queue[body["n"] :]
            return httpx.Response(200, json={"queries": claimed})
        if path == "/runs/1/answers":
            for a in body["answers"]:
                self.answers[a["query_id"]] = (a["class_id"], a["lead_time_ms"])
            return httpx.Response(200, json={"answers": []})
        self.skips[int(path.split("/")[2])] = body.get("lead_time_ms")
        return httpx.Response(200, json={})


def _run(tmp_path: Path, **kw) -> tuple[Api, object]:
    (tmp_path / "tgt" / "labels").mkdir(parents=True, exist_ok=True)
    Image.fromarray(MASK).save(tmp_path / "tgt" / "labels" / "a.png")
    api = Api(
        [
            {"id": 1, "image_id": 7, "y": 0, "x": 0, "region": WHOLE},
            {"id": 2, "image_id": 7, "y": 0, "x": 2},
            {"id": 3, "image_id": 7, "y": 1, "x": 1, "region": VOID},
            {"id": 4, "image_id": 7, "y": 1, "x": 0, "region": ROW1},
        ]
    )
    cfg = OracleConfig(
        server="http://svc",
        token="t",
        data=tmp_path,
        run=1,
        batch=4,
        idle_exit=0.0,
        poll=0.0,
        seed=0,
        **kw,
    )
    client = ServiceClient(
        "http://svc", "t", transport=httpx.MockTransport(api), retry=RetryPolicy(base_delay=0)
    )
    return api, run_oracle(client, cfg, threading.Event())


def test_the_cost_model_oracle_charges_each_answer_its_kinds_seconds(tmp_path: Path) -> None:
    api, summary = _run(tmp_path, cost_model=True)
    assert api.answers == {1: (1, 3000), 2: (2, 2400), 4: (2, 3000)}
    assert api.skips == {3: 1200}  # an all-void region: skipped, charged a skip's time
    assert summary.lead_ms_total == 8400 and summary.skip_ms_total == 1200


def test_without_the_flag_the_lead_time_is_the_wall_time(tmp_path: Path) -> None:
    api, summary = _run(tmp_path, delay_ms=30)
    leads = {lead for _, lead in api.answers.values()}
    assert len(leads) == 1 and 90 <= leads.pop() < 2400  # one batch's wall time, not the model
    assert api.skips == {3: None} and summary.skip_ms_total == 0


def test_the_cli_flags_of_the_cost_model(tmp_path: Path) -> None:
    cfg = parse_args(
        ["--token", "t", "--data", str(tmp_path), "--cost-model", "--cost-spread", "0.2"]
    )
    assert cfg.cost_model and cfg.cost_spread == 0.2
    assert not parse_args(["--token", "t", "--data", str(tmp_path)]).cost_model
    with pytest.raises(SystemExit):
        parse_args(["--token", "t", "--data", str(tmp_path), "--cost-spread", "1.5"])
