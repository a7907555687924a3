"""Benchmark and human modes: the server owns the budget M_e, on a new run and on a resume."""

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from trainer.config import TrainConfig
from trainer.data.folder import SplitTensors
from trainer.loop import checkpoint
from trainer.loop.adapt import AdaptResult
from trainer.loop.train import Data
from trainer.worker import benchmark as worker
from trainer.worker.run import WorkerOptions


class FakeClient:
    """The calls ``run_worker`` makes, with a server whose budget rounding is its own."""

    budget_total = 42  # int(0.57 * 100) == 56 and floor(0.57 * 100) == 57: neither

    def __init__(self, *args, **kw) -> None:
        self.created: list[dict] = []

    def create_run(self, **body) -> dict:
        self.created.append(body)
        return {"id": 7, "budget_total": self.budget_total, **body}

    def get_run(self, run_id: int) -> dict:
        return {"id": run_id, "budget_total": self.budget_total + 1}

    def register_images(self, run_id, items) -> dict:
        return {key: i + 1 for i, (key, _) in enumerate(items)}

    def list_images(self, run_id: int) -> list[dict]:
        return [{"id": 1, "key": "t/0"}, {"id": 2, "key": "t/1"}]

    def iter_answers_since(self, run_id: int, after: int = 0):
        return iter(())

    def iter_queries(self, run_id: int, after: int = 0):
        return iter(())

    def budget(self, run_id: int) -> dict:
        return {"reserved": 0, "answered": 0, "groups": {}}

    def finish_run(self, run_id: int) -> dict:
        return {}


def _data() -> Data:
    split = SplitTensors(
        torch.zeros(2, 3, 5, 10, dtype=torch.uint8),
        torch.zeros(2, 5, 10, dtype=torch.uint8),
        ["t/0", "t/1"],
    )
    return Data(split, split, split, split, ["a", "b"], [(0, 0, 0), (1, 1, 1)])


@pytest.fixture
def fakes(monkeypatch):
    seen: dict[str, int] = {}
    model = torch.nn.Linear(1, 1)

    def adapt(model, cfg, data, oracle, bank, device, hooks):
        assert oracle.expected == hooks.state.window.expected  # adapt's M_e is the server's
        seen["expected"] = oracle.expected
        return AdaptResult(model, bank, 50.0, 0)

    monkeypatch.setattr(worker, "ServiceClient", FakeClient)
    monkeypatch.setattr(worker, "load_data", lambda cfg, **kw: _data())
    monkeypatch.setattr(worker, "pretrain", lambda *a, **kw: model)
    monkeypatch.setattr(worker, "evaluate", lambda *a: SimpleNamespace(miou=lambda: 30.0))
    monkeypatch.setattr(worker, "adapt", adapt)
    return seen


def test_the_worker_takes_the_budget_from_the_server(fakes, tmp_path: Path) -> None:
    cfg = TrainConfig(budget_rate=0.57, iterations=4, device="cpu")
    opts = WorkerOptions(server="http://svc", token="t", checkpoint_dir=tmp_path)
    assert _data().target_pixels == 100 and int(0.57 * 100) == 56
    summary = worker.run_worker(cfg, opts)
    assert fakes["expected"] == FakeClient.budget_total and summary["run_id"] == 7
    written = torch.load(tmp_path / "checkpoint.pt", weights_only=True)  # the one format
    assert written["format"] == checkpoint.FORMAT and written["run_id"] == 7
    assert [c.name for c in checkpoint.load(tmp_path / "checkpoint.pt").classes] == ["a", "b"]
    worker.run_worker(cfg, opts)  # the checkpoint is there: resume, reading the run back
    assert fakes["expected"] == FakeClient.budget_total + 1
