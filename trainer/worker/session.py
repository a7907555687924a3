"""``adamcu-worker --mode session``: a labeling session whose pace the people set.

The worker trains without pause (:mod:`trainer.worker.learner`: source + target batches, the
images with fresh labels first, at a constant learning rate since nobody knows when the session
ends; with ``cooldown_iterations`` decayed to 0 after the plateau) and around the training
steps it

- merges the answers every ``merge_every`` iterations (one GET), so each is in a gradient step
  within an iteration or two of being read;
- keeps about N minutes of work per active annotator queued and withdraws the queries nobody
  claimed for T minutes, and every ``rescore_seconds`` those whose pixel the current model is
  no longer unsure of (:mod:`trainer.worker.queue_keeper`);
- evaluates on target-val every ``eval_seconds``, posts the point and keeps the best weights
  (``best.pt``);
- ends when the budget is answered (every label trained on), target-val has not improved
  for ``plateau_minutes`` and any ``cooldown_iterations`` have run, or when an admin finishes
  the run (:mod:`trainer.worker.end_rule`). Killed, it resumes from its checkpoint and the
  server's record (``rebuild``).

:class:`Session` is the loop over these pieces: it holds the clocks (what is due when), the
link to the service and the event log (``session.jsonl``), and hands each piece what it needs.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from trainer.config import QueryKind, TrainConfig
from trainer.cost import CostModel
from trainer.data.superpixels import region_maps
from trainer.learning.labelbank import LabelBank
from trainer.loop.schedule import new_loop_state
from trainer.loop.train import Data
from trainer.selection.policy import make_policy
from trainer.worker.end_rule import EndRule, Standing
from trainer.worker.learner import Learner
from trainer.worker.link import ServiceLink
from trainer.worker.queue_keeper import QueueKeeper
from trainer.worker.rounds import Picker, SessionOptions, created_time
from trainer.worker.run import WorkerOptions, post_metrics
from trainer.worker.shared import Shared

log = logging.getLogger("adamcu.worker")

# the session's progress line (every 10 s: docker compose logs, adamcu loop), from the budget
PROGRESS = (
    "progress session iteration %(iteration)d, answered %(answered)d/%(expected)d, "
    "%(reserved)d pending, best target-val %(best).1f"
)


def run_seconds(cfg: TrainConfig, run: dict) -> float | None:
    """The run's budget in annotator seconds as the server holds it (None: a pixel budget).
    A config with a seconds budget needs a run that has one (the worker registers it)."""
    seconds = run.get("budget_seconds")
    if cfg.budget_seconds_per_image > 0 and not seconds:
        raise ValueError(
            f"the config asks a budget of {cfg.budget_seconds_per_image} annotator seconds per "
            f"image, but run {run['id']} on the server has no seconds budget (created without "
            "one): start a new run (--new-run) or set budget_seconds_per_image to 0"
        )
    return float(seconds) if seconds else None


def target_regions(cfg: TrainConfig, data: Data, cache: Path) -> torch.Tensor | None:
    """(N, H, W) superpixel ids of the target images, computed once (and cached in ``cache``)
    when the run asks regions; None for a run of pixel queries."""
    if QueryKind(cfg.query_kind) == QueryKind.PIXELS:
        return None
    return region_maps(data.target.images, cfg.regions_per_image, cache)


class Session:
    """One session: the learner, the queue keeper and the end rule around one run;
    :meth:`run` is the loop."""

    def __init__(
        self,
        cfg: TrainConfig,
        opts: WorkerOptions,
        sopts: SessionOptions,
        data: Data,
        model: torch.nn.Module,
        device: torch.device,
        client: Any,
        run: dict,
    ) -> None:
        self.cfg, self.sopts, self.client = cfg, sopts, client
        self.run_id, expected = int(run["id"]), int(run["budget_total"])
        n, _, h, w = data.target.images.shape
        self.bank = LabelBank(n, h, w)
        self.link = ServiceLink(client, self.run_id, data.target.ids, "human")
        state = new_loop_state(cfg, expected, data.num_classes, n)
        picker = Picker(n, torch.Generator().manual_seed(cfg.seed + 3))
        draws = torch.Generator().manual_seed(cfg.seed + 2)
        seconds = run_seconds(cfg, run)
        costs = None if seconds is None else CostModel(spread=cfg.cost_spread)
        regions = target_regions(cfg, data, opts.checkpoint_dir / "cache")
        shared = Shared(self.run_id, expected, self.bank, state, picker, draws)
        shared.regions, shared.costs, shared.budget_seconds = regions, costs, seconds
        parts = (cfg, data, model, device, shared, opts.checkpoint_dir)
        self.learner = Learner(*parts, sopts.weight_average, sopts.weight_average_warmup)
        # the benchmark loop's policy, under the seconds budget the server holds (if any)
        per_image = 0.0 if seconds is None else seconds / n
        policy_cfg = replace(self.learner.step_cfg, budget_seconds_per_image=per_image)
        policy = make_policy(policy_cfg, state.sampler, n)
        self.keeper = QueueKeeper(self.link, sopts, cfg, shared, self.learner.score, policy)
        self.end = EndRule(sopts.plateau_minutes, sopts.cooldown_iterations, sopts.plateau_gain)
        self.ended: str | None = None  # "plateau" or "admin"
        self.events = (opts.checkpoint_dir / "session.jsonl").open("a")
        self._due: dict[str, float] = {}

    # -- bookkeeping -------------------------------------------------------------------------
    def event(self, kind: str, **fields: Any) -> None:
        self.events.write(json.dumps({"t": time.time(), "event": kind, **fields}) + "\n")
        self.events.flush()

    def due(self, name: str, every: float) -> bool:
        now = time.monotonic()
        if now < self._due.get(name, 0.0):
            return False
        self._due[name] = now + every
        return True

    def on_answers(self, answers: list[dict], resumed: bool = False) -> None:
        """Answers about to be merged: their queries are done, their labels fresh."""
        self.keeper.answered(answers)
        for a in answers:
            row = self.link.bank_row(a["image_id"])
            created = time.time() if resumed else created_time(a)
            self.learner.fresh.add(row, (a["image_id"], a["y"], a["x"]), created)

    def resume(self, ckpt: dict) -> None:
        """Continue a killed session: model and Algorithm 1 state from the checkpoint, the
        bank and the queries still standing from the server."""
        saved = self.learner.resume(ckpt)
        queries = self.link.rebuild(self.bank, lambda a: self.on_answers(a, resumed=True))
        self.keeper.restore(queries, saved.get("counts", {}))
        self.end.restart(saved.get("cooldown_from"))
        outstanding = len(self.keeper.outstanding)
        self.event("resumed", iteration=self.learner.iteration, outstanding=outstanding)

    # -- the loop ----------------------------------------------------------------------------
    def run(self) -> str:
        s = self.sopts
        while self.ended is None:
            if self.learner.iteration % s.merge_every == 0:
                self.link.sync(self.bank, self.on_answers)
            if self.due("round", s.round_seconds):
                self.top_up()
            self.train_step()
            if self.due("rescore", s.rescore_seconds):
                self.withdraw(rescore=True)
            elif self.due("stale", min(s.rescore_seconds, 60 * s.stale_minutes / 4)):
                self.withdraw(rescore=False)
            if self.due("eval", s.eval_seconds):
                self.evaluate()
            if self.due("checkpoint", s.checkpoint_seconds):
                self.save()
            if self.due("status", s.status_seconds):
                self.ended = self.ended or self.check_end()
        return self.ended

    def train_step(self) -> None:
        cfg, learner = self.cfg, self.learner
        learner.step(self.end.lr(cfg.lr, learner.iteration, cfg.poly_power))
        if self.end.cooled(learner.iteration):  # the rate reached 0: the last point, the end
            self.evaluate()
            self.ended = self.ended or "plateau"

    def top_up(self) -> None:
        """Post the queue's shortfall (per the server's pace) as one round."""
        posted = self.keeper.top_up()
        if posted is not None:
            self.event("round", **posted)
        if self.keeper.finished:
            self.ended = "admin"  # finished since the last status check

    def withdraw(self, rescore: bool) -> None:
        withdrawn = self.keeper.withdraw(rescore)
        if withdrawn is not None:
            self.event("withdrawn", **withdrawn)

    def evaluate(self) -> None:
        point = self.learner.measure()
        post_metrics(self.client, self.run_id, point)
        improved = self.learner.keep_if_best(point)
        self.end.evaluated(point["miou"])
        if improved:
            self.save(best=True)
        self.event("eval", miou=point["miou"], labeled=point["labeled_pixels"])

    def check_end(self) -> str | None:
        """ "admin" once the run is finished on the server; else what the end rule says
        from the budget (a cooldown that begins is logged, and the run goes on)."""
        if self.client.get_run(self.run_id)["status"] == "finished":
            return "admin"
        b, learner = self.client.budget(self.run_id), self.learner
        if self.due("progress", 10.0):  # docker compose logs, adamcu loop
            log.info(PROGRESS, {**b, "iteration": learner.iteration, "best": learner.best_val})
        standing = Standing(b, self.keeper.exhausted, bool(learner.fresh.fresh), learner.iteration)
        verdict = self.end.check(standing)
        if verdict != "cooldown":
            return verdict
        iterations = self.sopts.cooldown_iterations
        self.event("cooldown", iteration=learner.iteration, iterations=iterations)
        return None

    def save(self, best: bool = False) -> None:
        kept = {"counts": self.keeper.counts, "cooldown_from": self.end.cooling_from}
        self.learner.save(kept, best)
