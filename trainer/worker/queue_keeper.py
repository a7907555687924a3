"""The session's queue keeper: it keeps about N minutes of work per active annotator queued.

- pacing: :meth:`QueueKeeper.top_up` reads the server's pace and posts the shortfall
  (:func:`trainer.worker.rounds.round_size`) as one round;
- posting: a round's pixels are picked by the run's selection policy (the benchmark loop's;
  Algorithm 1 for the paper's strategies) from images scored by the model as it is now
  (:meth:`QueueKeeper.select`, the one place that selects); a pixel the server refuses as a
  duplicate is left out from then on; a policy of region kind (``query_kind`` regions or
  both) picks whole superpixels of the images' region maps, each posted as one region query
  (``trainer.worker.regions``) whose pixels are marked asked together;
- the budget: in pixels, the server's reserved + answered; in annotator seconds (a run with a
  seconds budget), the server's answered seconds plus each query in flight at the most its
  kind may cost (``trainer.cost.CostModel.most``);
- withdrawing: queries nobody claimed for T minutes, and (``rescore``) those whose pixel the
  current model is no longer unsure of; a withdrawn pixel is unmarked in the bank, so it may be
  asked again.

It talks to the service through the link only and learns nothing; the session's event log
gets what :meth:`top_up` and :meth:`withdraw` return.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch

from client.api import BudgetExceeded, DuplicatePixel, ServiceError
from server.schemas import Region
from trainer.config import QueryKind, TrainConfig
from trainer.cost import PIXEL, REGION
from trainer.loop.step import calibrate_thresholds
from trainer.selection.policy import Policy
from trainer.selection.seconds import in_queries
from trainer.selection.views import BudgetView, Picked
from trainer.worker.link import (
    ServiceLink,
    flatten_cells,
    region_cells,
    spent_seconds,
    wire_group,
)
from trainer.worker.regions import encode_region, first_pixel
from trainer.worker.rounds import (
    Outstanding,
    SessionOptions,
    round_budget,
    round_maps,
    round_size,
)
from trainer.worker.shared import Shared

log = logging.getLogger("adamcu.worker")

PixelRow = tuple[int, int, int]  # (bank row, y, x)


class QueueKeeper:
    """The queries of one session: posted in rounds, outstanding, withdrawn.

    ``score``: bank rows -> Eq. 1 on every pixel of their images (B,H,W) and the softmax
    (B,C,H,W), with the model as it is now (the learner's
    :meth:`~trainer.worker.learner.Learner.score`); ``policy``: the run's selection."""

    def __init__(
        self,
        link: ServiceLink,
        sopts: SessionOptions,
        cfg: TrainConfig,
        shared: Shared,
        score: Callable[[list[int]], tuple[torch.Tensor, torch.Tensor]],
        policy: Policy,
    ) -> None:
        self.link, self.sopts, self.cfg, self.shared, self.score = link, sopts, cfg, shared, score
        self.policy = policy  # the run's selection, the benchmark loop's (selection/policy.py)
        self.outstanding = Outstanding()
        self.withdrawn_pixels: set[PixelRow] = set()
        self.counts = {"rounds": 0, "posted": 0, "withdrawn": 0, "max_pending": 0}
        self.selections = 0  # calls of the policy (Alternate: pixels on even, regions on odd)
        # a whole pass found no pixel left to ask, or the budget view nothing left to spend
        self.exhausted = False
        self.finished = False  # the server refused a round: an admin finished the run

    # -- what the server says about the queries ------------------------------------------------
    def answered(self, answers: list[dict]) -> None:
        """Answers merged: their queries are no longer outstanding."""
        self.outstanding.drop(a["query_id"] for a in answers)

    def restore(self, queries: list[dict], counts: dict[str, int]) -> None:
        """After a restart: the counts as saved, and the run's standing queries (from the
        link's rebuild) that still wait for a person outstanding again."""
        self.counts.update(counts)
        for q in queries:
            if q.get("status") in ("pending", "leased"):
                row = self.link.bank_row(q["image_id"])
                cells = None if q.get("region") is None else region_cells(q["region"])
                group = q.get("group", "other")
                self.outstanding.add(int(q["id"]), row, q["y"], q["x"], None, group, cells)

    # -- pacing and posting ----------------------------------------------------------------------
    def top_up(self) -> dict[str, Any] | None:
        """Post the queue's shortfall (per the server's pace) as one round; returns the round
        (quota, posted, pending, rate) or None when the queue is full enough."""
        pace = self.link.pace()
        self.counts["max_pending"] = max(self.counts["max_pending"], int(pace["pending"]))
        quota = round_size(pace, self.sopts)
        if quota <= 0:
            return None
        posted = self.post_round(quota)
        self.counts["rounds"] += 1
        self.counts["posted"] += posted
        rate = pace.get("answers_per_minute")
        return {"quota": quota, "posted": posted, "pending": pace["pending"], "rate": rate}

    def post_round(self, quota: int) -> int:
        """Score a few images at a time, select their pixels and post them, until ``quota``
        are posted, the budget is spent or a pass over the images ends; returns the posted."""
        spent, picker, expected = self.spent(), self.shared.picker, self.shared.expected
        if self.spent_out(spent):
            self.exhausted = True  # the seconds are spent or in flight: the budget's end
            return 0
        posted = 0
        for rows in picker.pick_rows(self.sopts.round_images):
            score, prob = self.score(rows)
            asked = self.shared.bank.batch(torch.tensor(rows))[2]
            call, self.selections = self.selections, self.selections + 1
            budget = round_budget(expected, spent, quota - posted, picker.wrapped, call)
            kind = self.policy.kind_at(budget)
            mask, phase = self.select(score, prob, ~asked, budget, rows)
            if phase in ("done", "none"):
                break
            dry = phase != "high" and not bool(mask.any())
            self.exhausted = dry and picker.wrapped
            if kind == REGION:
                now = self._post_regions(rows, mask.cpu(), score.cpu(), phase)
            else:
                now = self._post(rows, mask.cpu(), score.cpu(), phase)
            posted += now
            costs = self.shared.costs
            charged = int(mask.sum()) if costs is None else now * costs.most(kind)
            spent[phase] = spent.get(phase, 0) + charged
            if posted >= quota or self.finished:
                break
        return posted

    def spent(self) -> dict[str, int] | dict[str, float]:
        """The budget spent per group as a round starts: pixels (reserved + answered, the
        server's count), or under a seconds budget the server's spent seconds (its answers'
        and its skips' lead times, as the in-process oracle charges both) plus, for each
        query in flight, the most its kind may cost."""
        costs = self.shared.costs
        if costs is None:
            return self.link.spent()
        groups = self.link.groups()
        spent = {g: spent_seconds(v) for g, v in groups.items()}
        for (group, region), n in self.outstanding.in_flight().items():
            # a group the server holds nothing in flight of: its outstanding were skipped or
            # answered since (their seconds are in spent_seconds)
            if int(groups.get(group, {}).get("reserved", 0)) > 0:
                spent[group] = spent.get(group, 0.0) + n * costs.most(REGION if region else PIXEL)
        return spent

    def spent_out(self, spent: dict[str, int] | dict[str, float]) -> bool:
        """Under a seconds budget: no query of the run's kinds fits in the seconds left (the
        policy's own rule, :func:`trainer.selection.seconds.in_queries`, at the cheapest kind);
        always False under a pixel budget."""
        costs, total = self.shared.costs, self.shared.budget_seconds
        if costs is None or total is None:
            return False
        kind = QueryKind(self.cfg.query_kind)
        kinds = [PIXEL] * (kind != QueryKind.REGIONS) + [REGION] * (kind != QueryKind.PIXELS)
        most = min(costs.most(k) for k in kinds)
        return in_queries(BudgetView(0, spent), total, most, 1.0).left <= 0

    def select(
        self,
        score: torch.Tensor,
        prob: torch.Tensor,
        unasked: torch.Tensor,
        budget: BudgetView,
        rows: list[int] | None = None,
    ) -> Picked:
        """The run's selection policy on freshly scored images (B,H,W) of bank ``rows``:
        pixels of ``unasked`` within ``budget`` (a round's: no window, capped) and their group
        (the thresholds are calibrated on the first images scored)."""
        state = self.shared.state
        if not state.calibrated:
            calibrate_thresholds(state, score, self.cfg)
        regions = self.shared.regions
        if regions is not None and rows is not None:
            regions = regions[torch.tensor(rows)]
        maps = round_maps(score, prob, state.sampler, unasked, regions)
        return self.policy.select(maps, budget, self.shared.generator)

    def _post(self, rows: list[int], mask: torch.Tensor, score: torch.Tensor, phase: str) -> int:
        b, ys, xs = mask.nonzero(as_tuple=True)
        if not len(b):
            return 0
        return self._post_pixels(torch.tensor(rows)[b], ys, xs, score[b, ys, xs], phase)

    def _post_regions(
        self, rows: list[int], mask: torch.Tensor, score: torch.Tensor, phase: str
    ) -> int:
        """Post the picked pixels (whole superpixels' unasked pixels) as region queries, one
        per superpixel of each image, at its first pixel, scored by its mean S."""
        assert self.shared.regions is not None
        maps = self.shared.regions[torch.tensor(rows)]
        index, regions, scores = [], [], []
        for b, row in enumerate(rows):
            for rid in torch.unique(maps[b][mask[b]]).tolist():
                inside = mask[b] & (maps[b] == rid)
                index.append(row)
                regions.append(encode_region(inside))
                scores.append(float(score[b][inside].mean()))
        if not regions:
            return 0
        return self._post_region_queries(index, regions, scores, phase)

    def _post_region_queries(
        self, index: list[int], regions: list[Region], scores: list[float], phase: str
    ) -> int:
        bank = self.shared.bank
        firsts = [first_pixel(r) for r in regions]
        ys, xs = torch.tensor([p[0] for p in firsts]), torch.tensor([p[1] for p in firsts])
        cells = [r.cells() for r in regions]
        (rows, cell_ys, cell_xs), _ = flatten_cells(index, cells)
        try:
            ids = self.link.post(index, ys, xs, phase, torch.tensor(scores), regions)
        except BudgetExceeded as exc:  # an older view of the budget: the next round retries
            log.warning("budget refused a round of %d regions: %s", len(index), exc)
            return 0
        except DuplicatePixel as exc:  # a region's first pixel was asked (and withdrawn) before
            log.warning("%s: the round's %d regions left out from now on", exc, len(index))
            bank.mark_asked(rows, cell_ys, cell_xs)
            return 0
        except ServiceError as exc:
            if exc.code != "run_finished":
                raise
            self.finished = True
            return 0
        bank.mark_asked(rows, cell_ys, cell_xs)
        by_pixel = {p: qid for qid, p in ids.items()}
        group = wire_group(phase)
        for i, (y, x), region_pixels in zip(index, firsts, cells, strict=True):
            qid = by_pixel.get((self.link.image_id(self.link.keys[i]), y, x))
            if qid is not None:
                self.outstanding.add(qid, i, y, x, None, group, region_pixels)
        return len(ids)

    def _post_pixels(
        self,
        index: torch.Tensor,
        ys: torch.Tensor,
        xs: torch.Tensor,
        scores: torch.Tensor,
        phase: str,
        retry: bool = True,
    ) -> int:
        bank = self.shared.bank
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
            bank.mark_asked(index[drop], ys[drop], xs[drop])
            if drop.all():
                return 0
            keep = ~drop
            return self._post_pixels(index[keep], ys[keep], xs[keep], scores[keep], phase, False)
        except ServiceError as exc:
            if exc.code != "run_finished":
                raise
            self.finished = True  # finished since the last status check
            return 0
        bank.mark_asked(index, ys, xs)
        by_pixel = {p: qid for qid, p in ids.items()}
        group = wire_group(phase)
        for i, y, x in zip(index.tolist(), ys.tolist(), xs.tolist(), strict=True):
            qid = by_pixel.get((self.link.image_id(self.link.keys[i]), y, x))
            if qid is not None:
                self.outstanding.add(qid, i, y, x, None, group)
        return len(ids)

    # -- withdrawing -----------------------------------------------------------------------------
    def withdraw(self, rescore: bool) -> dict[str, Any] | None:
        """Withdraw the pending queries nobody claimed for T minutes and, with ``rescore``,
        those the current model is sure of now (their pixel in G_l); returns what was
        withdrawn and kept, or None when nothing was due."""
        ids = set(self.outstanding.stale(self.sopts.stale_minutes))
        if rescore:
            ids |= self.certain()
        if not ids:
            return None
        withdrawn, kept = self.link.withdraw(sorted(ids))
        gone = self.outstanding.drop(withdrawn)
        if gone:
            cells = [[(q.y, q.x)] if q.cells is None else q.cells for q in gone]
            (rows, ys, xs), _ = flatten_cells([q.row for q in gone], cells)
            self.shared.bank.unmark(rows, ys, xs)
            self.withdrawn_pixels.update((q.row, q.y, q.x) for q in gone)
        self.outstanding.touch(i for i, st in kept.items() if st in ("leased", "unknown"))
        self.outstanding.drop(i for i, st in kept.items() if st not in ("leased", "unknown"))
        self.counts["withdrawn"] += len(withdrawn)
        return {"ids": withdrawn, "kept": len(kept), "rescore": rescore}

    def certain(self) -> set[int]:
        """Outstanding queries whose pixel the model, scored now, is sure of."""
        if not self.shared.state.calibrated:
            return set()
        return self.outstanding.sure(self._scores, self.cfg.pi_low_quantile)

    def _scores(self, rows: list[int]) -> torch.Tensor:
        return self.score(rows)[0].cpu()
