"""The worker refuses a checkpoint of another config; --new-run moves it aside (no deletion)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from trainer.config import TrainConfig
from trainer.strategies import configure
from trainer.worker.main import parse_args
from trainer.worker.resume import ResumeRefused, check_resume, differences


def _checkpoint(folder: Path, cfg: TrainConfig) -> None:
    torch.save({"config": cfg.to_dict(), "run_id": 7, "iteration": 3}, folder / "checkpoint.pt")
    (folder / "run.json").write_text('{"run_id": 7, "before": 0.1}')


def test_same_config_resumes_and_another_is_refused_naming_the_fields(tmp_path: Path) -> None:
    cfg = configure(TrainConfig(), "full")
    _checkpoint(tmp_path, cfg)
    check_resume(tmp_path, cfg.to_dict(), new_run=False)  # same config: resume
    moved_device = configure(cfg, "full", device="cpu", data_root="/elsewhere")
    check_resume(tmp_path, moved_device.to_dict(), new_run=False)  # where it runs: still the run
    other = configure(cfg, "random", budget_rate=0.05)
    with pytest.raises(ResumeRefused, match="budget_rate: 0.017 -> 0.05") as refused:
        check_resume(tmp_path, other.to_dict(), new_run=False)
    assert "strategy: 'full' -> 'random'" in str(refused.value) and "--new-run" in str(
        refused.value
    )
    assert (tmp_path / "checkpoint.pt").is_file()  # refused: nothing touched


def test_new_run_moves_the_old_files_aside(tmp_path: Path) -> None:
    cfg = configure(TrainConfig(), "full")
    _checkpoint(tmp_path, cfg)
    check_resume(tmp_path, configure(cfg, "random").to_dict(), new_run=True)
    assert not (tmp_path / "checkpoint.pt").exists() and not (tmp_path / "run.json").exists()
    [old] = (tmp_path / "previous").iterdir()
    assert {p.name for p in old.iterdir()} == {"checkpoint.pt", "run.json"}
    check_resume(tmp_path, cfg.to_dict(), new_run=True)  # nothing left to move: a no-op


def test_differences_ignore_tuple_vs_list() -> None:
    assert differences({"crop": [4, 8]}, {"crop": (4, 8)}) == []


def test_new_run_flag_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    base = ["--token", "t", "--data", "d"]
    assert parse_args(base)[1].new_run is False
    assert parse_args([*base, "--new-run"])[1].new_run is True
    monkeypatch.setenv("ADAMCU_NEW_RUN", "1")
    assert parse_args(base)[1].new_run is True
