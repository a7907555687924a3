"""The session's learner: its training steps, its evaluations on target-val and its
checkpoints (``checkpoint.pt``, and ``best.pt`` with the best weights by target-val).

Each step trains on a source batch and a target batch, the images with fresh labels first
(:class:`trainer.worker.rounds.Freshness` measures how long each answer waited for its
gradient step), at the rate the session gives it (constant; decayed to 0 by a cooldown). The
learner never asks: the queue keeper posts the queries in rounds, scored by :meth:`Learner.score`.
No HTTP either: the session posts the points :meth:`Learner.measure` returns.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch

from trainer.config import TrainConfig
from trainer.data.folder import to_float
from trainer.loop import bundles
from trainer.loop.bundles import Batch
from trainer.loop.checkpoint import data_classes, payload, save
from trainer.loop.step import adaptation_step
from trainer.loop.train import Data, evaluate, source_batch
from trainer.nets.average import WeightAverage
from trainer.nets.model import param_groups, set_lr
from trainer.strategies import for_budget
from trainer.worker.rounds import Freshness, score_images
from trainer.worker.run import Place, restore, save_checkpoint
from trainer.worker.shared import Shared


class Learner:
    """The model of one session, what it trained on and its best target-val so far."""

    def __init__(
        self,
        cfg: TrainConfig,
        data: Data,
        model: torch.nn.Module,
        device: torch.device,
        shared: Shared,
        folder: Path,
        average: float = 0.0,
        average_warmup: bool = False,
    ) -> None:
        self.cfg, self.data, self.model, self.device = cfg, data, model, device
        self.shared, self.folder = shared, folder
        # what the steps train with
        self.step_cfg = for_budget(cfg, shared.expected, data.target_pixels)
        shared.state.dccm = shared.state.dccm.to(device)
        self.opt = torch.optim.SGD(
            param_groups(model, cfg.lr, cfg.head_lr_mult, cfg.weight_decay),
            lr=cfg.lr,
            momentum=cfg.momentum,
        )
        # the training step never asks: the queue keeper's rounds do
        parts = (model, self.opt, self.step_cfg, shared.state, shared.generator)
        self.stepper = bundles.Learner(*parts)
        self.fresh = Freshness()
        # > 0: evaluate, keep and report the weights' moving average (decay per step), 0: the
        # network as it is (SessionOptions.weight_average, weight_average_warmup)
        self.average = WeightAverage(model, average, average_warmup) if average > 0 else None
        self.iteration, self.best_val, self.best_iteration = 0, -1.0, -1
        self.best_labels = 0  # labeled pixels the best weights were trained with
        self.best_state = copy.deepcopy(model.state_dict())

    @property
    def reported(self) -> torch.nn.Module:
        """The network evaluated, kept as the best and reported: the weight average when the
        session keeps one, else the trained network."""
        return self.model if self.average is None else self.average.model

    def images(self, rows: list[int]) -> torch.Tensor:
        """Target-train images of bank ``rows`` as the model takes them."""
        return to_float(self.data.target.images[torch.tensor(rows)]).to(self.device)

    def score(self, rows: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Eq. 1 on every pixel of bank ``rows``' images, with the model as it is now, and the
        softmax: (B,H,W) and (B,C,H,W) on the model's device."""
        return score_images(self.model, self.images(rows), self.cfg.gamma)

    def step(self, lr: float) -> None:
        """One training step at learning rate ``lr``; the fresh labels of its images count
        as trained on."""
        cfg, shared = self.cfg, self.shared
        rows = shared.picker.train_rows(self.fresh.next_rows(cfg.batch_target), cfg.batch_target)
        sx, sy = source_batch(self.data, cfg.batch_source, shared.generator, cfg, self.device)
        batch = Batch(sx, sy, self.images(rows), torch.tensor(rows))
        set_lr(self.opt, lr)
        adaptation_step(self.stepper, batch, shared.bank)
        if self.average is not None:
            self.average.update(self.model)
        self.fresh.stepped(rows)
        self.iteration += 1

    def measure(self) -> dict[str, Any]:
        """The model on target-val now: the metrics point the session posts."""
        data = self.data
        cm = evaluate(self.reported, data.val, data.num_classes, self.device)
        return {
            "iteration": self.iteration,
            "labeled_pixels": self.shared.bank.num_labeled,
            "miou": cm.miou(),
            "per_class_iou": cm.per_class_iou(),
        }

    def keep_if_best(self, point: dict[str, Any]) -> bool:
        """Keep the weights if ``point`` (from :meth:`measure`) is the best target-val yet."""
        if not point["miou"] > self.best_val:
            return False
        self.best_val, self.best_iteration = point["miou"], self.iteration
        self.best_labels = int(point["labeled_pixels"])
        self.best_state = copy.deepcopy(self.reported.state_dict())
        return True

    def save(self, session: dict[str, Any], best: bool = False) -> None:
        """``checkpoint.pt`` with the session's state (``session``: what the other pieces keep
        across a restart) and, with ``best``, ``best.pt``."""
        kept = {"best_val": self.best_val, "best_iteration": self.best_iteration}
        kept |= {"best_labels": self.best_labels} | session
        if self.average is not None:
            kept["average"] = self.average.model.state_dict()
            kept["average_updates"] = self.average.updates
        shared, path = self.shared, self.folder / "checkpoint.pt"
        args = (self.model, shared.state, Place(self.iteration, shared.run_id), self.cfg)
        save_checkpoint(path, *args, data=self.data, bank=shared.bank, extra={"session": kept})
        if best:  # the one checkpoint format, with the best weights: adamcu predict loads it
            point = {
                "iteration": self.best_iteration,
                "miou": self.best_val,
                "run_id": shared.run_id,
                "labeled_pixels": self.best_labels,  # the labels these weights hold
            }
            size = self.data.target.images.shape[-2:]
            ckpt = payload(self.cfg, self.model, data_classes(self.data), size, **point)
            save(self.folder / "best.pt", ckpt | {"model": self.best_state})

    def resume(self, ckpt: dict) -> dict[str, Any]:
        """Continue from a checkpoint: the model, Algorithm 1's state, the best so far.
        Returns the session's state saved with it (see :meth:`save`)."""
        self.iteration = restore(ckpt, self.model, self.shared.state)
        saved = ckpt.get("session", {})
        self.best_val = float(saved.get("best_val", -1.0))
        self.best_iteration = int(saved.get("best_iteration", -1))
        self.best_labels = int(saved.get("best_labels", 0))
        if self.average is not None and "average" in saved:
            self.average.model.load_state_dict(saved["average"])
            self.average.updates = int(saved.get("average_updates", self.iteration))
        best = self.folder / "best.pt"
        if best.is_file():
            self.best_state = torch.load(best, map_location=self.device, weights_only=True)["model"]
        return saved
