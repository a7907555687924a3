"""``adamcu dry-run`` on a few tiny images: every strategy spends exactly M_e at every budget,
and the JSON's rows hold what can be computed by hand."""

from __future__ import annotations

import json
import logging

import pytest
import torch

from stack.cli import main
from trainer.bench.dryrun import run_one
from trainer.bench.dryrun_args import STRATEGIES, DryRunSpec
from trainer.bench.dryrun_report import row_progress
from trainer.bench.scenes import SceneCache
from trainer.loop.progress import Progress

ARGS = [
    "dry-run",
    "--height", "64",
    "--width", "128",
    "--images", "5",
    "--classes", "9",
    "--passes", "3",
    "--query-passes", "2",
    "--scenes", "2",
    "--mcu-steps", "4",
    "--budgets", "0.001,0.05",
]  # fmt: skip


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("dryrun") / "dry.json"
    assert main([*ARGS, "--out", str(out)]) == 0
    return json.loads(out.read_text())


def test_every_strategy_spends_exactly_the_budget(report):
    rows = report["rows"]
    assert [(r["strategy"], r["budget"]) for r in rows] == [
        (s, b) for s in STRATEGIES for b in (0.001, 0.05)
    ]
    for r in rows:
        # the service's rounding, floor(rate x 5 x 64 x 128 pixels): 40.96 -> 40, 2048 -> 2048
        assert r["expected"] == {0.001: 40, 0.05: 2048}[r["budget"]]
        assert r["spent"] == r["expected"], r["strategy"]
        assert sum(r["spent_by_group"].values()) == r["spent"]
        assert r["labels_per_image"]["max"] <= 64 * 128
        assert r["labels_per_image"]["median"] <= r["labels_per_image"]["p90"]
        assert abs(sum(r["class_shares"]) - 1.0) < 1e-3 and len(r["class_shares"]) == 9
    assert report["all_spent"] is True


def test_schedule_and_algorithm1_groups(report):
    for r in report["rows"]:
        # 3 passes of ceil(5 / 2) = 3 batches; queries in the first 2 of 3 passes: 6 calls
        assert (r["iterations"], r["query_iterations"], r["selection_calls"]) == (9, 6, 6)
        seconds = r["selection_seconds_per_visit"]
        assert 0 <= seconds["median"] <= seconds["max"]
        algorithm1 = r["strategy"] in ("full", "mcu-cap")  # Alg. 1 groups
        assert (r["spent_high"] + r["spent_medium"] == r["spent"]) == algorithm1
        # MCU sets only where the strategy builds them, on the 4 sampled iterations
        has_mcu = r["strategy"] in ("full", "mcu-cap")
        assert (r["mcu"] is not None) == has_mcu
        assert r["mcu_steps_sampled"] == (4 if has_mcu else 0)
        if has_mcu:
            assert r["mcu"]["target_labels"]["max"] <= 2 * 64 * 128
            assert r["mcu"]["pixels"]["max"] >= r["mcu"]["target_pixels"]["max"]
    # mcu-cap's MCUs: G_l pseudo labels below cap_pseudo_below_rate (19.7 labels an image; 8 at
    # 0.1 % here), true labels only above it (409 at 5 %)
    cap = {r["budget"]: r for r in report["rows"] if r["strategy"] == "mcu-cap"}
    assert cap[0.001]["pseudo_labels"] and cap[0.001]["mcu"]["target_pseudo"]["max"] > 0
    assert not cap[0.05]["pseudo_labels"] and cap[0.05]["mcu"]["target_pseudo"]["max"] == 0


def test_the_oracle_answers_through_each_images_flip_and_offset():
    cache = SceneCache.build(images=6, h=16, w=32, classes=9, scenes=2, seed=3)
    images = torch.arange(6)
    _, _, _, label = cache.batch(images)
    ys, xs = torch.meshgrid(torch.arange(16), torch.arange(32), indexing="ij")
    for i in range(6):
        index = torch.full((16 * 32,), i)
        answers = cache.ask(index, ys.reshape(-1), xs.reshape(-1), "high", torch.zeros(1))
        assert torch.equal(answers.view(16, 32), label[i])
    flipped = cache.variant >= 2
    assert bool(flipped.any()) and not bool(flipped.all())  # seed 3 mixes both
    assert bool((cache.shift > 0).all())  # and shifts each


def test_a_rows_progress_lines_name_the_row(caplog):
    now = [0.0]
    bar = row_progress("row 2/40 ripu 1.7%", 60.0, clock=lambda: now[0])(5)
    assert bar.mode == "log"  # stderr is no terminal here: lines, not a bar
    with caplog.at_level(logging.INFO, logger="adamcu.progress"):
        for t in (30.0, 61.0, 90.0, 125.0, 200.0):  # the clock at each iteration's end
            now[0] = t
            bar.update()
    # a line at 61 s (2 done: 0.03 it/s, 3 left ~1m32s), the next 60 s later or after (4 done
    # at 125 s); none at 30 s or 90 s, none for the last iteration
    assert [r.getMessage() for r in caplog.records] == [
        "progress dry-run row 2/40 ripu 1.7% 2/5 (40%) 0.03 it/s, eta 1m32s",
        "progress dry-run row 2/40 ripu 1.7% 4/5 (80%) 0.03 it/s, eta 31s",
    ]
    assert row_progress("off", 0.0)(5).mode == "off"


def test_a_row_counts_each_iteration_it_runs():
    spec = DryRunSpec(64, 128, images=5, classes=9, passes=3, query_passes=2, scenes=2, mcu_steps=4)
    cache = SceneCache.build(spec.images, spec.height, spec.width, spec.classes, spec.scenes, 0)
    bars: list[Progress] = []

    def progress(total: int) -> Progress:
        bars.append(Progress(total, "x", mode="off"))
        return bars[-1]

    run_one(spec, cache, "full", 0.05, progress)
    # the 6 query-window iterations (0-5) and the sampled MCU iterations after it (of 9
    # iterations, 0, 2, 4 and 6 are sampled; only 6 lies after the window): 7 in all
    assert [(b.total, b.done) for b in bars] == [(7, 7)]
