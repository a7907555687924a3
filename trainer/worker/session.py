"""``adamcu-worker --mode session``: a labeling session whose pace the people set.

The worker trains without pause (source + target batches, the images with fresh labels
first, at a constant learning rate since nobody knows when the session ends; with
``cooldown_iterations`` decayed to 0 after the plateau) and around the training steps it

- merges the answers every ``merge_every`` iterations (one GET), so each is in a gradient step
  within an iteration or two of being read;
- keeps about N minutes of work per active annotator queued: every ``round_seconds`` it reads
  the server's pace and posts the shortfall as one round, picked by the run's selection policy
  (the benchmark loop's; Algorithm 1 for the paper's strategies) from images scored by the
  model as it is now (:mod:`trainer.worker.rounds`);
- withdraws queries nobody claimed for T minutes, and every ``rescore_seconds`` those whose
  pixel the current model is no longer unsure of (now in G_l); a withdrawn pixel is unmarked,
  but the server keeps one query per pixel and refuses it again (the worker then drops it);
- evaluates on target-val every ``eval_seconds``, posts the point and keeps the best weights
  (``best.pt``);
- ends when the budget is answered (every label trained on), target-val has not improved
  for ``plateau_minutes`` and any ``cooldown_iterations`` have run, or when an admin finishes
  the run. Killed, it resumes from its checkpoint and the server's record (``rebuild``).
"""

from __future__ import annotations

import copy
import json
import logging
import time
from typing import Any

import torch

from client.api import BudgetExceeded, DuplicatePixel, ServiceError
from trainer.config import TrainConfig
from trainer.data.folder import to_float
from trainer.learning.labelbank import LabelBank
from trainer.loop.bundles import Batch, Learner, LoopState
from trainer.loop.checkpoint import data_classes, payload, save
from trainer.loop.step import adaptation_step, calibrate_thresholds
from trainer.loop.train import Data, _source_batch, evaluate, new_loop_state
from trainer.nets.model import param_groups, set_lr
from trainer.selection.policy import make_policy
from trainer.strategies import for_budget
from trainer.worker.link import ServiceLink
from trainer.worker.main import Place, WorkerOptions, post_metrics, restore, save_checkpoint
from trainer.worker.rounds import (
    PROGRESS,
    Cooldown,
    Freshness,
    Outstanding,
    Picker,
    SessionOptions,
    created_time,
    round_budget,
    round_maps,
    round_size,
    score_images,
)

log = logging.getLogger("adamcu.worker")


class Session:
    """One session's state around the model; :meth:`run` is the loop."""

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
        self.cfg, self.opts, self.sopts, self.data = cfg, opts, sopts, data
        self.model, self.device, self.client = model, device, client
        self.run_id, self.expected = int(run["id"]), int(run["budget_total"])
        n, _, h, w = data.target.images.shape
        self.bank = LabelBank(n, h, w)
        self.link = ServiceLink(client, self.run_id, data.target.ids, "human")
        self.state: LoopState = new_loop_state(cfg, self.expected, data.num_classes, n)
        self.step_cfg = for_budget(cfg, self.expected, n)  # what the steps train with
        self.policy = make_policy(self.step_cfg, self.state.sampler)  # the rounds ask with it
        self.state.dccm = self.state.dccm.to(device)
        self.opt = torch.optim.SGD(
            param_groups(model, cfg.lr, cfg.head_lr_mult, cfg.weight_decay),
            lr=cfg.lr,
            momentum=cfg.momentum,
        )
        self.gen = torch.Generator().manual_seed(cfg.seed + 2)
        # the training step never asks: the rounds do
        self.learner = Learner(model, self.opt, self.step_cfg, self.state, self.gen)
        self.picker = Picker(n, torch.Generator().manual_seed(cfg.seed + 3))
        self.outstanding, self.fresh = Outstanding(), Freshness()
        self.cooldown = Cooldown(sopts.cooldown_iterations)
        self.iteration, self.best_val, self.best_iteration = 0, -1.0, -1
        self.best_at = self.done_at = self.last_eval = None
        self.best_state = copy.deepcopy(model.state_dict())
        self.ended: str | None = None
        self.exhausted = False  # a whole pass found no pixel left to ask
        self.withdrawn_pixels: set[tuple[int, int, int]] = set()  # (row, y, x)
        self.counts = {"rounds": 0, "posted": 0, "withdrawn": 0, "max_pending": 0}
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
        self.outstanding.drop(a["query_id"] for a in answers)
        for a in answers:
            row = self.link._bank_row(a["image_id"])
            created = time.time() if resumed else created_time(a)
            self.fresh.add(row, (a["image_id"], a["y"], a["x"]), created)

    def resume(self, ckpt: dict) -> None:
        """Continue a killed session: model and Algorithm 1 state from the checkpoint, the
        bank and the queries still standing from the server."""
        self.iteration = restore(ckpt, self.model, self.state)
        saved = ckpt.get("session", {})
        self.best_val = float(saved.get("best_val", -1.0))
        self.best_iteration = int(saved.get("best_iteration", -1))
        self.counts.update(saved.get("counts", {}))
        self.cooldown.start = saved.get("cooldown_from")
        best = self.opts.checkpoint_dir / "best.pt"
        if best.is_file():
            self.best_state = torch.load(best, map_location=self.device, weights_only=False)[
                "model"
            ]
        queries = self.link.rebuild(self.bank, lambda a: self.on_answers(a, resumed=True))
        for q in queries:
            if q.get("status") in ("pending", "leased"):
                self.outstanding.add(
                    int(q["id"]), self.link._bank_row(q["image_id"]), q["y"], q["x"]
                )
        self.best_at = time.monotonic()  # the plateau clock starts again
        self.event("resumed", iteration=self.iteration, outstanding=len(self.outstanding))

    # -- the loop ----------------------------------------------------------------------------
    def run(self) -> str:
        s = self.sopts
        while self.ended is None:
            if self.iteration % s.merge_every == 0:
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
        cfg, data = self.cfg, self.data
        rows = self.picker.train_rows(self.fresh.next_rows(cfg.batch_target), cfg.batch_target)
        tidx = torch.tensor(rows)
        sx, sy = _source_batch(data, cfg.batch_source, self.gen, cfg, self.device)
        tx = to_float(data.target.images[tidx]).to(self.device)
        batch = Batch(sx, sy, tx, tidx)
        set_lr(self.opt, self.cooldown.lr(cfg.lr, self.iteration, cfg.poly_power))
        adaptation_step(self.learner, batch, self.bank)
        self.fresh.stepped(rows)
        self.iteration += 1
        if self.cooldown.done(self.iteration):  # the rate reached 0: the last point, the end
            self.evaluate()
            self.ended = self.ended or "plateau"

    def top_up(self) -> None:
        """Post the queue's shortfall (per the server's pace) as one round."""
        pace = self.client.pace(self.run_id)
        self.counts["max_pending"] = max(self.counts["max_pending"], int(pace["pending"]))
        quota = round_size(pace, self.sopts)
        if quota <= 0:
            return
        posted = self.post_round(quota)
        self.counts["rounds"] += 1
        self.counts["posted"] += posted
        rate = pace.get("answers_per_minute")
        self.event("round", quota=quota, posted=posted, pending=pace["pending"], rate=rate)

    def post_round(self, quota: int) -> int:
        spent = self.link.spent()
        posted = 0
        for rows in self.picker.pick_rows(self.sopts.round_images):
            score, prob = score_images(self.model, self._images(rows), self.cfg.gamma)
            if not self.state.calibrated:
                calibrate_thresholds(self.state, score, self.cfg)
            asked = self.bank.batch(torch.tensor(rows))[2]
            maps = round_maps(score, prob, self.state.sampler, ~asked)
            budget = round_budget(self.expected, spent, quota - posted, self.picker.wrapped)
            mask, phase = self.policy.select(maps, budget, self.gen)
            if phase in ("done", "none"):
                break
            dry = phase not in ("high", "none") and not bool(mask.any())
            self.exhausted = dry and self.picker.wrapped
            posted += self._post(rows, mask.cpu(), score.cpu(), phase)
            spent[phase] = spent.get(phase, 0) + int(mask.sum())
            if posted >= quota or self.ended:
                break
        return posted

    def _post(self, rows: list[int], mask: torch.Tensor, score: torch.Tensor, phase: str) -> int:
        b, ys, xs = mask.nonzero(as_tuple=True)
        if not len(b):
            return 0
        return self._post_pixels(torch.tensor(rows)[b], ys, xs, score[b, ys, xs], phase)

    def _post_pixels(
        self,
        index: torch.Tensor,
        ys: torch.Tensor,
        xs: torch.Tensor,
        scores: torch.Tensor,
        phase: str,
        retry: bool = True,
    ) -> int:
        try:
            ids = self.link.post(index.tolist(), ys, xs, phase, scores)
        except BudgetExceeded as exc:  # an older view of the budget: the next round retries
            log.warning("budget refused a round of %d: %s", len(index), exc)
            return 0
        except DuplicatePixel as exc:  # a server that keeps withdrawn pixels unique
            pixels = list(zip(index.tolist(), ys.tolist(), xs.tolist(), strict=True))
            again = torch.tensor([p in self.withdrawn_pixels for p in pixels], dtype=torch.bool)
            drop = again if retry and bool(again.any()) else torch.ones_like(again)
            log.warning("%s: %d pixels of the round left out from now on", exc, int(drop.sum()))
            self.bank.mark_asked(index[drop], ys[drop], xs[drop])
            if drop.all():
                return 0
            keep = ~drop
            return self._post_pixels(index[keep], ys[keep], xs[keep], scores[keep], phase, False)
        except ServiceError as exc:
            if exc.code != "run_finished":
                raise
            self.ended = "admin"  # finished since the last status check
            return 0
        self.bank.mark_asked(index, ys, xs)
        by_pixel = {p: qid for qid, p in ids.items()}
        for i, y, x in zip(index.tolist(), ys.tolist(), xs.tolist(), strict=True):
            qid = by_pixel.get((self.link.image_id(self.data.target.ids[i]), y, x))
            if qid is not None:
                self.outstanding.add(qid, i, y, x)
        return len(ids)

    def withdraw(self, rescore: bool) -> None:
        """Withdraw the pending queries nobody claimed for T minutes and, with ``rescore``,
        those the current model is sure of now (their pixel in G_l)."""
        ids = set(self.outstanding.stale(self.sopts.stale_minutes))
        if rescore:
            ids |= self.certain()
        if not ids:
            return
        withdrawn, kept = self.link.withdraw(sorted(ids))
        gone = self.outstanding.drop(withdrawn)
        if gone:
            rows = torch.tensor([q.row for q in gone])
            ys, xs = torch.tensor([q.y for q in gone]), torch.tensor([q.x for q in gone])
            self.bank.unmark(rows, ys, xs)
            self.withdrawn_pixels.update((q.row, q.y, q.x) for q in gone)
        self.outstanding.touch(i for i, st in kept.items() if st in ("leased", "unknown"))
        self.outstanding.drop(i for i, st in kept.items() if st not in ("leased", "unknown"))
        self.counts["withdrawn"] += len(withdrawn)
        self.event("withdrawn", ids=withdrawn, kept=len(kept), rescore=rescore)

    def certain(self) -> set[int]:
        """Outstanding queries whose pixel the model, scored now, is sure of."""
        if not self.state.calibrated:
            return set()
        return self.outstanding.sure(self._scores, self.cfg.pi_low_quantile)

    def _scores(self, rows: list[int]) -> torch.Tensor:
        return score_images(self.model, self._images(rows), self.cfg.gamma)[0].cpu()

    def _images(self, rows: list[int]) -> torch.Tensor:
        return to_float(self.data.target.images[torch.tensor(rows)]).to(self.device)

    def evaluate(self) -> None:
        cm = evaluate(self.model, self.data.val, self.data.num_classes, self.device)
        point = {
            "iteration": self.iteration,
            "labeled_pixels": self.bank.num_labeled,
            "miou": cm.miou(),
            "per_class_iou": [None if v != v else round(100 * v, 2) for v in cm.iou().tolist()],
        }
        post_metrics(self.client, self.run_id, point)
        self.last_eval = time.monotonic()
        if point["miou"] > self.best_val:
            self.best_val, self.best_iteration = point["miou"], self.iteration
            self.best_at = time.monotonic()
            self.best_state = copy.deepcopy(self.model.state_dict())
            self.save(best=True)
        self.event("eval", miou=point["miou"], labeled=point["labeled_pixels"])

    def check_end(self) -> str | None:
        """ "admin" once the run is finished on the server; "plateau" once the budget is
        answered, every label trained on, and target-val has not improved for the plateau."""
        if self.client.get_run(self.run_id)["status"] == "finished":
            return "admin"
        b = self.client.budget(self.run_id)
        if self.due("progress", 10.0):  # docker compose logs, adamcu loop
            log.info(PROGRESS, {**b, "iteration": self.iteration, "best": self.best_val})
        answered = b["answered"] >= b["expected"] or (b["reserved"] == 0 and self.exhausted)
        if not answered or self.fresh.fresh:
            self.done_at = None
            self.cooldown.cancel()
            return None
        now = time.monotonic()
        self.done_at = self.done_at or now
        if self.last_eval is None or self.last_eval < self.done_at:
            return None  # one evaluation with every label in
        since = max(self.done_at, self.best_at or self.done_at)
        if self.cooldown.start is not None or now - since < 60 * self.sopts.plateau_minutes:
            return None  # cooling (train_step ends it) or still improving
        if self.cooldown.iterations == 0:
            return "plateau"
        self.cooldown.start = self.iteration
        self.event("cooldown", iteration=self.iteration, iterations=self.cooldown.iterations)
        return None

    def save(self, best: bool = False) -> None:
        d = self.opts.checkpoint_dir
        kept = {"best_val": self.best_val, "best_iteration": self.best_iteration}
        extra = {"session": kept | {"counts": self.counts, "cooldown_from": self.cooldown.start}}
        args = (self.model, self.state, Place(self.iteration, self.run_id), self.cfg)
        save_checkpoint(d / "checkpoint.pt", *args, data=self.data, bank=self.bank, extra=extra)
        if best:  # the one checkpoint format, with the best weights: adamcu predict loads it
            point = {"iteration": self.best_iteration, "miou": self.best_val, "run_id": self.run_id}
            size = self.data.target.images.shape[-2:]
            best_ckpt = payload(self.cfg, self.model, data_classes(self.data), size, **point)
            save(d / "best.pt", best_ckpt | {"model": self.best_state})
