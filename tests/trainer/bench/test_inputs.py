"""adamcu bench's inputs (trainer/bench/inputs.py): the narrowed grid and the data folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.userdata import make_user_folder, snapshot
from trainer.bench.grid import plan
from trainer.bench.inputs import narrow, parse_grid, prepare_data
from trainer.bench.presets import PRESETS
from trainer.config import TrainConfig

SPLITS = ["source-train", "target-train", "target-val", "target-test"]


def test_the_grid_narrows_to_the_flags() -> None:
    grid = parse_grid("random,full", "0.001, 0.017", "0,1")
    assert grid == (["random", "full"], [0.001, 0.017], [0, 1])
    preset = narrow(PRESETS["standard"], *grid)
    runs = plan(preset, TrainConfig())
    assert {(r.strategy, r.budget_rate, r.seed) for r in runs} == {
        (s, b, seed) for s in ("random", "full") for b in (0.001, 0.017) for seed in (0, 1)
    }
    assert narrow(PRESETS["quick"]) == PRESETS["quick"]
    with pytest.raises(ValueError, match="unknown strategies"):
        narrow(PRESETS["quick"], ["randon"])
    with pytest.raises(ValueError, match="--budgets"):
        parse_grid(None, "1.7%", None)
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        narrow(PRESETS["quick"], budgets=[1.7])


def test_a_user_folder_is_used_as_it_is(tmp_path: Path) -> None:
    data = make_user_folder(tmp_path / "mine")
    before = snapshot(data)
    assert prepare_data(data, PRESETS["smoke"], SPLITS) == {"user": data}
    assert snapshot(data) == before
    (data / "target-val" / "labels" / "IMG_1000.png").unlink()
    with pytest.raises(ValueError, match="missing label"):
        prepare_data(data, PRESETS["smoke"], SPLITS)
    with pytest.raises(ValueError, match="missing"):
        prepare_data(
            make_user_folder(tmp_path / "two", {"target-train": 1}), PRESETS["smoke"], SPLITS
        )
