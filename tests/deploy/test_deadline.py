"""The main job waits on its worker's progress, not on the clock, and fails in one sentence.

``adamcu loop`` gave up after a fixed 900 s while a slow machine's worker was still
pre-training, with a raw traceback as the only explanation.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from stack import loop
from stack.watch import ERROR_LOG, Deadline, LoopError, wait_for_worker

# a "worker" that logs a progress line every `gap` seconds, `n` times, then exits 0
SLOW_WORKER = """
import sys, time
gap, n = float(sys.argv[1]), int(sys.argv[2])
for i in range(1, n + 1):
    time.sleep(gap)
    print(f"t adamcu.progress INFO progress pretrain {i}/{n} ({100 * i // n}%)", flush=True)
"""


def _worker(folder: Path, *args: str) -> tuple[subprocess.Popen, Path]:
    folder.mkdir(exist_ok=True)
    log = folder / "worker.log"
    with log.open("w") as f:
        proc = subprocess.Popen([sys.executable, "-c", *args], stdout=f, stderr=subprocess.STDOUT)
    return proc, log


def test_a_slow_worker_that_progresses_is_not_stopped(tmp_path: Path) -> None:
    """Each step takes 0.4 s and the whole run 2.4 s: twice the 1.2 s stall deadline."""
    proc, log = _worker(tmp_path, SLOW_WORKER, "0.4", "6")
    deadline = Deadline(log, stall=1.2)
    shown: list[str] = []
    tick = loop._follower(log, shown.append, deadline)
    assert wait_for_worker(proc, deadline, tick, every=0.1) == 0
    assert shown[-1] == "worker: progress pretrain 6/6 (100%)"
    assert deadline.last_progress == "progress pretrain 6/6 (100%)"


def test_a_worker_without_progress_stops_with_one_sentence_naming_its_log(tmp_path: Path) -> None:
    proc, log = _worker(tmp_path, SLOW_WORKER, "0.2", "1")  # one line, then nothing for long
    proc.wait()
    hung, _ = _worker(tmp_path / "hung", "import time; time.sleep(60)")
    deadline = Deadline(log, stall=0.8)
    tick = loop._follower(log, lambda *_: None, deadline)
    try:
        with pytest.raises(LoopError) as caught:
            wait_for_worker(hung, deadline, tick, every=0.1)
    finally:
        hung.kill()
        hung.wait()
    sentence = str(caught.value)
    assert "no progress for 1 s" in sentence and str(log) in sentence
    assert "progress pretrain 1/1 (100%)" in sentence  # where it stood
    assert "--stall-timeout 2" in sentence  # what to do
    assert "\n" not in sentence


def test_the_wall_clock_limit_is_opt_in() -> None:
    now = [0.0]
    deadline = Deadline(Path("w.log"), stall=10, clock=lambda: now[0])
    for _ in range(100):  # 1000 s, progressing every 5 s: no --timeout, no stop
        now[0] += 5
        deadline.progressed("a line")
        deadline.check()
    limited = Deadline(Path("w.log"), stall=10, total=30, clock=lambda: now[0])
    now[0] += 31
    limited.progressed("a line")
    with pytest.raises(LoopError, match="--timeout of 30 s"):
        limited.check()


@pytest.mark.parametrize(
    "error, says",
    [
        (LoopError("the worker exited with code 2; its log x ends with 'boom': fix it"), "code 2"),
        (KeyError("summary"), "failed unexpectedly (KeyError"),
    ],
)
def test_a_failure_prints_one_sentence_on_stdout_and_exits_1(
    tmp_path: Path, monkeypatch, capsys, error: Exception, says: str
) -> None:
    def fail(opts):
        raise error

    monkeypatch.setattr(loop, "run_loop", fail)
    assert loop.main(["--out", str(tmp_path / "out"), "--data", str(tmp_path / "d")]) == 1
    out, err = capsys.readouterr()
    assert out.count("\n") == 1 and out.startswith("adamcu loop: ") and says in out
    assert "Traceback" not in out + err
    if not isinstance(error, LoopError):  # the unforeseen: its traceback in a file it names
        trace = tmp_path / "out" / ERROR_LOG
        assert str(trace) in out and "Traceback" in trace.read_text()
