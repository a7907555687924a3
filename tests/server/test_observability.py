"""Operations: the request id (X-Request-ID in and out, in every log line of the request),
JSON log lines, and a Prometheus scrape of /metrics."""

from __future__ import annotations

import io
import json
import logging
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from server.logs import JsonFormatter, new_request_id, uvicorn_log_config
from server.main import create_app
from server.settings import Settings
from tests.server.conftest import ADMIN, Clock, Env, World, make_world


@pytest.fixture
def world(tmp_path: Path, sqlite_template: Path) -> Iterator[World]:
    shutil.copy(sqlite_template, tmp_path / "adamcu.db")
    cfg = Settings(
        database_url=f"sqlite:///{tmp_path / 'adamcu.db'}",
        admin_token=ADMIN,
        environment="test",
        web_dir=None,
        store_root=tmp_path / "store",
    )
    with TestClient(create_app(cfg, clock=Clock())) as client:
        yield make_world(Env(cfg, client, Clock(), "sqlite"), budget_total=5)


def scrape(w: World) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    r = w.get("/metrics", "viewer")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def test_metrics_scrape_counts_requests_queue_budget_and_answers(world: World) -> None:
    run = str(world.run_id)
    before = scrape(world)
    assert before[("adamcu_budget_pixels", (("kind", "total"), ("run", run)))] == 5
    assert world.ask([(0, 0), (0, 1), (0, 2)]).status_code == 201
    [q, *_] = world.claim("alice", n=1)
    assert world.answer(q["id"]).status_code == 200
    after = scrape(world)
    assert after[("adamcu_queries", (("run", run), ("status", "pending")))] == 2
    assert after[("adamcu_queries", (("run", run), ("status", "answered")))] == 1
    assert after[("adamcu_budget_pixels", (("kind", "answered"), ("run", run)))] == 1
    assert after[("adamcu_budget_pixels", (("kind", "left"), ("run", run)))] == 2
    assert after[("adamcu_answers_total", ())] - before[("adamcu_answers_total", ())] == 1
    route = (("method", "POST"), ("route", "/api/v1/queries/{query_id}/answer"), ("status", "200"))
    key = ("adamcu_http_requests_total", route)
    assert after[key] - before.get(key, 0) == 1
    hist = ("method", "POST"), ("route", "/api/v1/queries/{query_id}/answer")
    assert after[("adamcu_http_request_duration_seconds_count", hist)] >= 1


def test_metrics_need_a_token(world: World) -> None:
    r = world.env.client.get("/metrics")
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"


def test_request_id_is_echoed_or_made(world: World) -> None:
    c = world.env.client
    assert c.get("/health", headers={"X-Request-ID": "abc-123"}).headers["x-request-id"] == (
        "abc-123"
    )
    made = c.get("/health").headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", made)
    junk = c.get("/health", headers={"X-Request-ID": "a b\tc" * 50}).headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", junk)
    refused = c.get("/api/v1/me", headers={"X-Request-ID": "r-401"})  # errors carry it too
    assert refused.status_code == 401 and refused.headers["x-request-id"] == "r-401"
    assert new_request_id("x" * 129) != "x" * 129


def test_access_lines_are_json_with_the_request_id(world: World) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    access = logging.getLogger("server.access")
    access.addHandler(handler)
    old = access.level
    access.setLevel(logging.INFO)
    try:
        headers = {**world.h("viewer"), "X-Request-ID": "trace-7"}
        world.env.client.get("/api/v1/me", headers=headers)
    finally:
        access.removeHandler(handler)
        access.setLevel(old)
    [line] = [json.loads(x) for x in stream.getvalue().splitlines()]
    assert line["request_id"] == "trace-7" and line["status"] == 200
    assert line["route"] == "/api/v1/me" and line["level"] == "INFO" and line["ms"] >= 0
    assert line["message"] == "GET /api/v1/me 200"


def test_json_formatter_outside_a_request_and_with_an_exception() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.getLogger("x").makeRecord(
            "x", logging.ERROR, __file__, 1, "failed %s", ("here",), __import__("sys").exc_info()
        )
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "failed here" and "request_id" not in line
    assert "ValueError: boom" in line["exception"]


def test_uvicorn_log_config_is_valid_for_both_formats() -> None:
    for fmt in ("json", "text"):
        config = uvicorn_log_config(fmt, access_log=True)
        logging.config.dictConfig(config)  # raises on a bad config
    assert uvicorn_log_config("json", False)["loggers"]["server.access"]["level"] == "WARNING"
