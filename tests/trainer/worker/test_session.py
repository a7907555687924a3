"""The session loop in process against the in-memory service and a simulated person: it ends
by itself once the budget is answered and target-val stops improving, every answer in the bank
and trained on; it resumes after a crash without asking a pixel twice; an admin can end it."""

import json
import shutil
import threading
import time
from pathlib import Path

import pytest
import torch

from trainer.config import TrainConfig
from trainer.data.synth import generate_benchmark
from trainer.loop.train import load_data
from trainer.strategies import configure
from trainer.worker import session as session_mod
from trainer.worker.run import WorkerOptions
from trainer.worker.session_main import run_session
from trainer.worker.simulated import MemoryService, SimulatedPerson

TINY = {"source-train": 24, "target-train": 8, "target-val": 4, "target-test": 4}
PACE = {
    "queue_minutes": 0.3,
    "queue_floor": 5,
    "queue_ceiling": 20,
    "stale_minutes": 0.25,
    "rescore_seconds": 4,
    "eval_seconds": 4,
    "plateau_minutes": 0.1,
    "round_seconds": 0.5,
    "status_seconds": 1,
    "cooldown_iterations": 8,
}


@pytest.fixture(scope="module")
def cfg(tmp_path_factory) -> TrainConfig:
    root = tmp_path_factory.mktemp("session")
    generate_benchmark(root / "data", counts=TINY, seed=1234)
    return configure(
        TrainConfig(),
        "full",
        data_root=str(root / "data"),
        pretrain_iterations=5,
        budget_rate=0.0006,  # 39 of 8 x 64 x 128 pixels
        device="cpu",
        seed=0,
    )


def _person(svc: MemoryService, cfg: TrainConfig, stop: threading.Event) -> SimulatedPerson:
    labels = load_data(cfg).target.labels
    person = SimulatedPerson(svc, labels, rate=(4, 10), pause=(0.05, 0.5), undo_at=5)

    def go() -> None:
        while not svc.run:
            time.sleep(0.05)
        person.run(stop)

    threading.Thread(target=go, daemon=True).start()
    return person


def _opts(tmp_path: Path, **pace) -> WorkerOptions:
    return WorkerOptions("mem", "t", "session", tmp_path / "w", session={**PACE, **pace})


@pytest.mark.slow
def test_a_session_resumes_after_a_crash_and_ends_by_itself(cfg, tmp_path, monkeypatch) -> None:
    torch.set_num_threads(1)
    svc, stop = MemoryService(lease_s=10), threading.Event()
    person = _person(svc, cfg, stop)
    step = session_mod.Session.train_step

    def crash(self) -> None:
        if self.learner.iteration == 12 and not getattr(self, "_resumed", False):
            raise RuntimeError("killed")
        step(self)

    monkeypatch.setattr(session_mod.Session, "train_step", crash)
    with pytest.raises(RuntimeError, match="killed"):
        run_session(cfg, _opts(tmp_path), client=svc)
    resume = session_mod.Session.resume

    def resumed(self, ckpt) -> None:
        self._resumed = True
        resume(self, ckpt)

    monkeypatch.setattr(session_mod.Session, "resume", resumed)
    summary = run_session(cfg, _opts(tmp_path), client=svc)
    stop.set()
    b = summary["budget"]
    assert summary["ended"] == "plateau" and summary["iterations"] > 12
    assert b["answered"] == b["expected"] == summary["labeled_pixels"] > 0 and b["reserved"] == 0
    assert summary["labels_trained"] == summary["labeled_pixels"]
    answered = {(a["image_id"], a["y"], a["x"]) for a in svc.answers}
    assert len(answered) == len(svc.answers) == b["answered"]  # no query answered twice
    assert person.undone == 1 and svc.run["status"] == "finished"
    assert summary["max_pending"] <= PACE["queue_ceiling"]
    events = [json.loads(line) for line in (tmp_path / "w" / "session.jsonl").open()]
    assert any(e["event"] == "resumed" for e in events)
    # after the plateau, the cooldown's iterations ran (rate to 0), then the run ended
    cooled = [e for e in events if e["event"] == "cooldown"]
    assert len(cooled) == 1 and cooled[0]["iteration"] + 8 == summary["iterations"]
    assert (tmp_path / "w" / "best.pt").is_file()


@pytest.mark.slow
def test_an_admin_ends_the_session_over_a_target_split_without_labels(cfg, tmp_path) -> None:
    """People label target-train: the session needs no labels/ there (the person here answers
    from a copy of them kept outside the data folder)."""
    torch.set_num_threads(1)
    svc, stop = MemoryService(lease_s=10), threading.Event()
    _person(svc, cfg, stop)  # reads the labels from cfg's folder, which keeps them
    data = tmp_path / "data"
    shutil.copytree(cfg.data_root, data)
    shutil.rmtree(data / "target-train" / "labels")
    cfg = cfg.replace(data_root=str(data))

    def finish_later() -> None:
        while len(svc.answers) < 5:
            time.sleep(0.1)
        svc.finish_run(1)

    threading.Thread(target=finish_later, daemon=True).start()
    summary = run_session(cfg, _opts(tmp_path, plateau_minutes=10), client=svc)
    stop.set()
    assert summary["ended"] == "admin"
    assert summary["labeled_pixels"] == len(svc.answers) == summary["budget"]["answered"]
    assert summary["budget"]["reserved"] == 0  # finishing released the queue
