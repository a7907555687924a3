"""Progress lines: what `docker compose logs` and the main job show of a long loop."""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import pytest
import torch

import trainer.loop.adapt
import trainer.loop.train
from tests.userdata import make_user_folder
from trainer.bench.experiment import run_strategy
from trainer.config import TrainConfig
from trainer.learning.labelbank import LabelBank
from trainer.loop.adapt import AdaptHooks, adapt, local_oracle
from trainer.loop.progress import Progress, duration, progress_line
from trainer.loop.stepstats import StepStats
from trainer.loop.train import load_data, pretrain
from trainer.strategies import configure


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_duration_reads_as_a_person_writes_it() -> None:
    assert [duration(s) for s in (0, 9.4, 75, 3599, 3725)] == [
        "0s",
        "9s",
        "1m15s",
        "59m59s",
        "1h02m",
    ]


def test_a_line_says_where_the_loop_is_how_fast_and_when_it_ends() -> None:
    line = progress_line("pretrain", 200, 800, 4.0, {"loss": 0.8314, "pass": "2/16"})
    assert line == "progress pretrain 200/800 (25%) 4.00 it/s, eta 2m30s, loss 0.831, pass 2/16"
    assert progress_line("adapt", 800, 800, 4.0) == "progress adapt 800/800 (100%) 4.00 it/s"
    assert progress_line("adapt", 0, 800, 0.0) == "progress adapt 0/800 (0%)"


def _run(caplog: pytest.LogCaptureFixture, steps: int, dt: float, **kw) -> list[str]:
    clock = Clock()
    caplog.set_level(logging.INFO, logger="adamcu.progress")
    with Progress(steps, "pretrain", mode="log", every=10.0, clock=clock, **kw) as bar:
        for _ in range(steps - kw.get("start", 0)):
            clock.t += dt
            bar.update(1, loss=0.5)
    return [r.getMessage() for r in caplog.records]


def test_log_mode_writes_a_line_every_interval_and_one_at_the_end(
    caplog: pytest.LogCaptureFixture,
) -> None:
    lines = _run(caplog, 100, 1.0)  # 100 s of work, a line every 10 s
    assert lines[0] == "progress pretrain 10/100 (10%) 1.00 it/s, eta 1m30s, loss 0.500"
    assert len(lines) == 10  # at 10, 20, ..., 90 s, and the last at 100/100
    assert lines[-1].startswith("progress pretrain 100/100 (100%) 1.00 it/s")


def test_a_short_loop_still_says_it_ended(caplog: pytest.LogCaptureFixture) -> None:
    assert _run(caplog, 5, 0.1) == ["progress pretrain 5/5 (100%) 10.00 it/s, loss 0.500"]


def test_a_resumed_loop_counts_its_own_rate(caplog: pytest.LogCaptureFixture) -> None:
    lines = _run(caplog, 100, 1.0, start=80)
    assert lines[0] == "progress pretrain 90/100 (90%) 1.00 it/s, eta 10s, loss 0.500"


def test_off_mode_is_silent_and_a_bad_mode_is_refused(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="adamcu.progress")
    with Progress(3, "x", mode="off") as bar:
        for _ in range(3):
            bar.update(1)
    assert caplog.records == []
    with pytest.raises(ValueError, match="use auto, bar, log or off"):
        Progress(3, "x", mode="loud")


def test_a_costly_field_is_computed_only_when_shown(caplog: pytest.LogCaptureFixture) -> None:
    clock, calls = Clock(), []

    def labeled() -> int:
        calls.append(1)
        return 7 * len(calls)

    caplog.set_level(logging.INFO, logger="adamcu.progress")
    with Progress(50, "adapt", mode="log", every=10.0, clock=clock) as bar:
        for _ in range(50):
            clock.t += 1.0
            bar.update(1, labeled=labeled)
    assert len(calls) == 5  # at 10, 20, 30, 40 s and at the end: not once a step
    assert [r.getMessage().split(", ")[-1] for r in caplog.records] == [
        "labeled 7",
        "labeled 14",
        "labeled 21",
        "labeled 28",
        "labeled 35",
    ]


def _tiny_run(tmp_path: Path, *, pretrain_iterations: int, iterations: int) -> TrainConfig:
    """ADA-MCU on a small user folder, evaluated once at the end."""
    return configure(
        TrainConfig(),
        "full",
        data_root=str(make_user_folder(tmp_path / "data")),
        pretrain_iterations=pretrain_iterations,
        iterations=iterations,
        eval_every=iterations,
        budget_rate=0.01,
    )


def _stop_the_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """The loops' progress on a stopped clock: no line falls due mid-run, only the last one at
    the end (on a loaded machine a step took over the 10 s between lines, and the extra lines
    broke the counts below)."""
    frozen = functools.partial(Progress, clock=lambda: 0.0)
    monkeypatch.setattr(trainer.loop.adapt, "Progress", frozen)
    monkeypatch.setattr(trainer.loop.train, "Progress", frozen)


def test_pretrain_and_adapt_log_their_lines(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real loops build their lines (loss, passes, the bank's labeled count) and log them."""
    _stop_the_clock(monkeypatch)
    cfg = _tiny_run(tmp_path, pretrain_iterations=3, iterations=2)
    caplog.set_level(logging.INFO, logger="adamcu.progress")
    result = run_strategy(cfg, load_data(cfg), None, progress="log")
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("progress pretrain 3/3 (100%)") and "loss " in lines[0]
    assert lines[1].startswith("progress adapt full 2/2 (100%)") and len(lines) == 2
    assert f"labeled {result['labeled_pixels']}" in lines[1] and "passes " in lines[1]


def test_a_quiet_step_is_never_read_back_to_the_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """adapt() reads a step's lazy stats (one device-to-host copy) only where the step asked
    for labels and when a progress line is shown, never in every step (issue 14)."""
    resolved = []
    real = StepStats._resolve

    def counted(self: StepStats) -> dict[str, float]:
        if self._host is None:
            resolved.append(1)
        return real(self)

    monkeypatch.setattr(StepStats, "_resolve", counted)
    _stop_the_clock(monkeypatch)
    cfg = _tiny_run(tmp_path, pretrain_iterations=2, iterations=8)
    data, device = load_data(cfg), torch.device("cpu")
    model = pretrain(cfg, data, device, None, progress="off")
    n, _, h, w = data.target.images.shape
    bank = LabelBank(n, h, w)
    oracle = local_oracle(data.target.labels, bank)
    result = adapt(model, cfg, data, oracle, bank, device, AdaptHooks(progress="log"))
    asking = sum(1 for q in result.queries.asked if q)
    assert 0 < asking < cfg.iterations  # quiet steps after the query window
    assert len(resolved) == asking + 1  # + the last line, at the end
