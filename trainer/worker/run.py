"""One run on the labeling service, as every mode of ``adamcu-worker`` opens, checkpoints and
reports it: the worker's options, the run created (its target images registered) or reopened
from the checkpoint, the checkpoint written and restored, an evaluation point posted.

Every mode's module imports this one (``trainer.worker.benchmark``, ``trainer.worker.session``)
and the CLI (``trainer.worker.main``) imports the modes: the imports go one way.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import torch

from client.api import ServiceClient
from trainer.config import TrainConfig
from trainer.cost import seconds_budget
from trainer.learning.labelbank import LabelBank
from trainer.loop.bundles import LoopState
from trainer.loop.checkpoint import data_classes, payload, read, save
from trainer.loop.train import Data
from trainer.worker.images import register_target_images

log = logging.getLogger("adamcu.worker")


@dataclass
class WorkerOptions:
    """How the worker reaches the service and where it keeps its checkpoint; ``mode`` picks
    the loop (``trainer.worker.main``)."""

    server: str
    token: str
    mode: str = "benchmark"  # benchmark: wait for answers; human: merge as they come
    checkpoint_dir: Path = Path("outputs/worker")
    checkpoint_every: int = 50
    answer_timeout: float = 120.0
    run_name: str = ""
    verbose: bool = False
    new_run: bool = False  # move an old checkpoint aside instead of resuming it
    store_dataset: str = ""  # the server's store holds --data as this dataset: register by path
    session: dict[str, Any] = field(default_factory=dict)  # SessionOptions fields (session mode)


def create_run(
    client: ServiceClient, cfg: TrainConfig, data: Data, name: str, store_dataset: str = ""
) -> dict:
    """Create the run and register its target images; returns the server's RunOut. A config
    with a budget in annotator seconds registers it (``budget_seconds``: per image x target
    images), so the server holds both budgets."""
    classes = [
        {"id": i, "name": n, "color": list(c)}
        for i, (n, c) in enumerate(zip(data.class_names, data.class_colors, strict=True))
    ]
    seconds = seconds_budget(cfg.budget_seconds_per_image, len(data.target.ids))
    run = client.create_run(
        name=name or f"{cfg.strategy}-seed{cfg.seed}",
        classes=classes,
        target_pixels=data.target_pixels,
        budget_rate=cfg.budget_rate,
        strategy=cfg.strategy,
        config=cfg.to_dict(),
        budget_seconds=seconds or None,
    )
    register_target_images(client, run["id"], cfg, data, store_dataset)
    return run


def open_run(
    client: ServiceClient, cfg: TrainConfig, data: Data, opts: WorkerOptions, device: torch.device
) -> tuple[dict, dict | None]:
    """The run to work on (the server's RunOut, which owns the budget M_e) and the checkpoint
    to resume from (None: a new run was created)."""
    ckpt_path = opts.checkpoint_dir / "checkpoint.pt"
    if ckpt_path.is_file():
        ckpt = read(ckpt_path, device)
        return client.get_run(int(ckpt["run_id"])), ckpt
    return create_run(client, cfg, data, opts.run_name, opts.store_dataset), None


class Place(NamedTuple):
    """Where a run is: the iteration to resume at and its run on the server."""

    iteration: int
    run_id: int


def save_checkpoint(
    path: Path,
    model: torch.nn.Module,
    state: LoopState,
    place: Place,
    cfg: TrainConfig,
    *,
    data: Data,
    bank: LabelBank,
    extra: dict[str, Any] | None = None,
) -> None:
    """The one checkpoint format (trainer/loop/checkpoint.py) plus the resume state (and ``extra``,
    e.g. the session mode's best target-val)."""
    resume = {"iteration": place.iteration, "run_id": place.run_id, "dccm": state.dccm.cpu()}
    resume |= {"thresholds": vars(state.sampler.state), "calibrated": state.calibrated}
    size = data.target.images.shape[-2:]
    save(path, payload(cfg, model, data_classes(data), size, bank, **resume, **(extra or {})))


def restore(ckpt: dict, model: torch.nn.Module, state: LoopState) -> int:
    """Load a checkpoint into the model and the loop state; returns the iteration to resume at."""
    model.load_state_dict(ckpt["model"])
    state.dccm, state.calibrated = ckpt["dccm"], ckpt["calibrated"]
    vars(state.sampler.state).update(ckpt["thresholds"])
    return int(ckpt["iteration"])


def post_metrics(client: ServiceClient, run_id: int, point: dict[str, Any]) -> None:
    """Post one evaluation point; once more if the response was lost (see below)."""

    def post() -> None:
        client.post_metrics(
            run_id,
            point["iteration"],
            point["miou"],
            labeled_pixels=point["labeled_pixels"],
            per_class_iou=[v if v is not None else 0.0 for v in point["per_class_iou"]],
        )

    try:
        post()
    except httpx.TransportError as exc:
        # the response was lost (e.g. the server was killed mid-request): the point may be
        # stored; posting it again risks a second row for this iteration, which readers
        # tolerate, while dying here would lose the whole run's progress
        log.warning(
            "metrics post at iteration %d lost its response (%s); posting again",
            point["iteration"],
            exc,
        )
        post()
