"""The trainer's budget M_e is the service's: server.schemas.budget_total, one rounding rule."""

from __future__ import annotations

import torch

from server.schemas import budget_total
from trainer.config import TrainConfig
from trainer.data.folder import SplitTensors
from trainer.loop.train import Data, budget_pixels


def _data(n: int, h: int, w: int) -> Data:
    split = SplitTensors(
        torch.zeros(n, 3, h, w, dtype=torch.uint8), torch.zeros(n, h, w, dtype=torch.uint8), []
    )
    return Data(split, split, split, split, ["a", "b"])


def test_budget_is_the_decimal_floor_not_the_float_product() -> None:
    data = _data(1, 10, 10)  # 100 target pixels
    assert int(0.57 * 100) == 56  # what the trainer used to compute
    assert budget_pixels(TrainConfig(budget_rate=0.57), data) == 57 == budget_total(0.57, 100)


def test_budget_of_the_smoke_benchmark_is_unchanged() -> None:
    data = _data(24, 64, 128)  # the smoke preset's target-train split
    assert budget_pixels(TrainConfig(budget_rate=0.017), data) == 3342
