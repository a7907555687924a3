"""The main job shows its worker's progress lines: read from the log file as it grows."""

from __future__ import annotations

from pathlib import Path

from stack.processes import ProgressTail


def test_the_tail_returns_each_new_progress_line_once(tmp_path: Path) -> None:
    log = tmp_path / "worker.log"
    tail = ProgressTail(log)
    assert tail.new() == []  # the worker has not written its log yet
    log.write_text(
        "2026-12-01 12:00:00,000 adamcu.worker INFO config {...}\n"
        "2026-12-01 12:00:10,000 adamcu.progress INFO progress pretrain 10/800 (1%) 1.00 it/s\n"
        "2026-12-01 12:00:20,000 adamcu.progress INFO progress pretrain 20/8"  # being written
    )
    assert tail.new() == ["progress pretrain 10/800 (1%) 1.00 it/s"]
    with log.open("a") as f:
        f.write("00 (2%) 1.00 it/s\n")
    assert tail.new() == ["progress pretrain 20/800 (2%) 1.00 it/s"]
    assert tail.new() == []
