"""The session's learner: a step trains the images with fresh labels first, at the rate the
session gives, and counts their labels trained on; the best target-val is kept and comes back
from the checkpoint after a restart."""

import time
from pathlib import Path

import pytest
import torch

from trainer.config import TrainConfig
from trainer.data.synth import generate_benchmark
from trainer.learning.labelbank import LabelBank
from trainer.loop.schedule import new_loop_state
from trainer.loop.train import Data, cached_model, evaluate, load_data
from trainer.worker.learner import Learner
from trainer.worker.rounds import Picker
from trainer.worker.shared import Shared

COUNTS = {"source-train": 4, "target-train": 4, "target-val": 2, "target-test": 2}
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> tuple[TrainConfig, Data]:
    root = tmp_path_factory.mktemp("learner")
    generate_benchmark(root, height=32, width=64, counts=COUNTS, seed=5)
    cfg = TrainConfig(data_root=str(root), device="cpu", seed=0)
    return cfg, load_data(cfg)


def _learner(
    cfg: TrainConfig, data: Data, folder: Path, average: float = 0.0, warmup: bool = False
) -> Learner:
    torch.set_num_threads(1)
    model = cached_model(cfg, data, CPU, None)[0]
    n, _, h, w = data.target.images.shape
    state = new_loop_state(cfg, 20, data.num_classes, n)
    picker, draws = Picker(n, torch.Generator().manual_seed(3)), torch.Generator().manual_seed(2)
    shared = Shared(1, 20, LabelBank(n, h, w), state, picker, draws)
    return Learner(cfg, data, model, CPU, shared, folder, average, warmup)


def test_a_step_trains_the_fresh_labels_first_at_the_rate_given(setup, tmp_path) -> None:
    cfg, data = setup
    learner = _learner(cfg, data, tmp_path)
    one = torch.tensor([3])
    learner.shared.bank.merge(one, one * 0, one * 0, torch.tensor([1]), ["high"])
    learner.fresh.add(3, (4, 0, 0), time.time() - 2.0)
    before = [p.detach().clone() for p in learner.model.parameters()]
    learner.step(0.004)
    assert learner.iteration == 1 and not learner.fresh.fresh
    assert learner.fresh.trained == {(4, 0, 0)} and learner.fresh.waits[0] >= 2.0
    assert {g["lr"] / g.get("lr_mult", 1.0) for g in learner.opt.param_groups} == {0.004}
    after = list(learner.model.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))
    score, prob = learner.score([0, 2])
    assert score.shape == (2, 32, 64) and prob.shape[0] == 2 and prob.shape[-2:] == (32, 64)


def test_the_best_target_val_is_kept_and_resumed_from_the_checkpoint(setup, tmp_path) -> None:
    cfg, data = setup
    learner = _learner(cfg, data, tmp_path)
    learner.step(0.01)
    point = learner.measure()
    assert point["iteration"] == 1 and point["labeled_pixels"] == 0
    assert len(point["per_class_iou"]) == data.num_classes
    assert learner.keep_if_best(point) and not learner.keep_if_best(point)  # no gain: kept
    learner.step(0.01)
    learner.save({"counts": {"rounds": 2}}, best=True)
    again = _learner(cfg, data, tmp_path)
    ckpt = torch.load(tmp_path / "checkpoint.pt", map_location=CPU, weights_only=False)
    saved = again.resume(ckpt)
    kept = {"best_val": point["miou"], "best_iteration": 1, "counts": {"rounds": 2}}
    assert saved == kept | {"best_labels": point["labeled_pixels"]}
    assert again.iteration == 2 and again.best_val == point["miou"] and again.best_iteration == 1
    assert all(torch.equal(again.best_state[k], v) for k, v in learner.best_state.items())
    now = learner.model.state_dict()
    assert all(torch.equal(again.model.state_dict()[k], v) for k, v in now.items())
    best = torch.load(tmp_path / "best.pt", map_location=CPU, weights_only=False)
    assert best["run_id"] == 1 and best["iteration"] == 1 and best["miou"] == point["miou"]


def test_with_a_weight_average_the_average_is_evaluated_kept_and_resumed(setup, tmp_path) -> None:
    cfg, data = setup
    learner = _learner(cfg, data, tmp_path, average=0.5)
    start = {k: v.clone() for k, v in learner.model.state_dict().items()}
    learner.step(0.05)
    trained = learner.model.state_dict()
    averaged = learner.reported.state_dict()
    name = next(k for k, v in start.items() if v.is_floating_point() and "running" not in k)
    assert not torch.equal(trained[name], start[name])  # the step moved the network
    assert torch.allclose(averaged[name], 0.5 * start[name] + 0.5 * trained[name])
    point = learner.measure()
    again_eval = evaluate(learner.reported, data.val, data.num_classes, CPU).miou()
    assert point["miou"] == again_eval  # target-val is the average's
    assert learner.keep_if_best(point)
    assert torch.equal(learner.best_state[name], averaged[name])  # the average is kept
    learner.save({}, best=True)
    again = _learner(cfg, data, tmp_path, average=0.5)
    again.resume(torch.load(tmp_path / "checkpoint.pt", map_location=CPU, weights_only=True))
    assert torch.equal(again.reported.state_dict()[name], averaged[name])
    assert torch.equal(again.model.state_dict()[name], trained[name])


def test_with_the_warm_up_the_average_holds_no_share_of_the_start_and_resumes_its_count(
    setup, tmp_path
) -> None:
    cfg, data = setup
    learner = _learner(cfg, data, tmp_path, average=0.5, warmup=True)
    learner.step(0.05)  # the first update copies the trained weights
    trained = learner.model.state_dict()
    name = next(k for k, v in trained.items() if v.is_floating_point() and "running" not in k)
    assert torch.equal(learner.reported.state_dict()[name], trained[name])
    learner.save({})
    again = _learner(cfg, data, tmp_path, average=0.5, warmup=True)
    again.resume(torch.load(tmp_path / "checkpoint.pt", map_location=CPU, weights_only=True))
    assert again.average is not None and again.average.updates == 1
