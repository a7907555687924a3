"""The pieces of a human-paced session (``adamcu-worker --mode session``) that do no I/O.

- :class:`SessionOptions`: how much work the queue holds, when queries go stale, how often the
  worker merges, evaluates and checks the run, when it ends.
- :func:`queue_target` / :func:`round_size`: how many queries to post now, from the server's
  pace (answers per minute) and budget.
- :func:`round_maps` / :func:`round_budget`: what the run's selection policy (the same one the
  benchmark loop calls, :mod:`trainer.selection.policy`) sees of a round: freshly scored
  images and the budget as the server counts it (spent = answered + reserved), without a
  window and capped at the round.
- :class:`Outstanding`: the queries posted and not yet answered, withdrawn or given up.
- :class:`Freshness`: answers merged and not yet in a gradient step, and how long they waited.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import torch

from trainer.nets.forward import upsample
from trainer.selection.sampling import ActiveSampler
from trainer.selection.uncertainty import partition, uncertainty_score
from trainer.selection.views import BudgetView, ScoreMaps

Pixel = tuple[int, int, int]  # (image_id, y, x) as the server names it


@dataclass
class SessionOptions:
    """The pace of a session; none of it is part of the run's config (a restart may change
    it). Times in seconds unless named in minutes."""

    queue_minutes: float = 2.0  # N: minutes of work per active annotator kept queued
    queue_floor: int = 10  # queued queries before any answer rate, and at least
    queue_ceiling: int = 120  # queued queries at most
    min_round: int = 5  # smaller top-ups wait (unless they are the budget's last pixels)
    stale_minutes: float = 5.0  # T: a query nobody claimed for this long is withdrawn
    round_seconds: float = 2.0  # how often the queue is checked against the pace
    rescore_seconds: float = 20.0  # how often pending queries' pixels are scored again
    merge_every: int = 1  # iterations between answer merges
    eval_seconds: float = 60.0  # target-val every ...
    # budget answered and target-val has not gained more than plateau_gain this long: done
    plateau_minutes: float = 2.0
    # mIoU points (of 100) above the value at the plateau clock's last start that restart it;
    # the session ends once target-val rises slower than plateau_gain / plateau_minutes points
    # a minute. 0: every new best restarts it (a weight average creeping up by a few tenths an
    # evaluation kept a session going). 0.5: our choice, on target-val (docs/results.md)
    plateau_gain: float = 0.5
    # > 0: then this many iterations with the learning rate decayed to 0 on the paper's poly
    # schedule (section IV-B) before the run ends; 0: end at the plateau, at the constant rate
    # (target-val, scripts/session_bench.py, 3 seeds: 100 iterations gained nothing)
    cooldown_iterations: int = 0
    # > 0: target-val, the best weights and the reported model are the moving average of the
    # weights (and BatchNorm statistics) with this decay per step, about 1 / (1 - decay) steps
    # (500 at 0.998); 0: the network as trained (it swings 3-6 points between evaluations on
    # the same labels). 0.998: our choice, on target-val (person-paced sessions end within 1
    # point of their best target-val; docs/results.md)
    weight_average: float = 0.998
    # the average's first 1 / (1 - weight_average) steps are their running mean (the n-th
    # update's decay min(weight_average, 1 - 1/n)), so the pre-trained weights it starts from
    # keep no share; False: a plain exponential average from them (trainer/nets/average.py).
    # True: our choice, on target-val (docs/results.md)
    weight_average_warmup: bool = True
    status_seconds: float = 5.0  # how often the run's status is read (an admin may end it)
    checkpoint_seconds: float = 30.0
    round_images: int = 4  # images scored together when picking a round's pixels

    def __post_init__(self) -> None:
        if not 0 < self.queue_floor <= self.queue_ceiling:
            raise ValueError("need 0 < queue_floor <= queue_ceiling")
        if self.queue_minutes <= 0 or self.merge_every < 1 or self.round_images < 1:
            raise ValueError("queue_minutes must be > 0, merge_every and round_images >= 1")
        if self.cooldown_iterations < 0:
            raise ValueError("cooldown_iterations must be >= 0")
        if self.plateau_gain < 0:
            raise ValueError("plateau_gain must be >= 0 (mIoU points)")
        if not 0.0 <= self.weight_average < 1.0:
            raise ValueError("weight_average must lie in [0, 1)")


def queue_target(pace: dict[str, Any], opts: SessionOptions) -> int:
    """Queries to keep pending: N minutes at the measured answer rate (all annotators
    together, so N minutes per active annotator), clamped to [floor, ceiling]; the floor
    before any rate is known."""
    rate = float(pace.get("answers_per_minute") or 0.0)
    if rate <= 0:
        return opts.queue_floor
    return max(opts.queue_floor, min(opts.queue_ceiling, math.ceil(opts.queue_minutes * rate)))


def round_size(pace: dict[str, Any], opts: SessionOptions) -> int:
    """Queries to post now: the queue's shortfall, within the budget left; 0 while the
    shortfall is under ``min_round`` and the budget holds more than that."""
    left = int(pace.get("budget_left", 0))
    need = min(queue_target(pace, opts) - int(pace.get("pending", 0)), left)
    if need <= 0 or need < min(opts.min_round, left):
        return 0
    return need


@torch.no_grad()
def score_images(
    model: torch.nn.Module, x: torch.Tensor, gamma: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 1 on every pixel of ``x`` (B,3,H,W) with the model as it is now (eval mode), and
    the softmax: (B,H,W) and (B,C,H,W) float on ``x``'s device."""
    was_training = model.training
    model.eval()
    out = model(x)
    main = upsample(out.main.float(), tuple(x.shape[-2:]))
    score = uncertainty_score(main, upsample(out.aux.float(), tuple(main.shape[-2:])), gamma)
    model.train(was_training)
    return score, main.softmax(1)


def round_maps(
    score: torch.Tensor,
    prob: torch.Tensor,
    sampler: ActiveSampler,
    unasked: torch.Tensor,
    regions: torch.Tensor | None = None,
) -> ScoreMaps:
    """A round's images as the selection policy sees them: S, its groups under the run's
    thresholds (section III-B), the softmax, the unasked pixels and (region queries) the
    images' superpixel ids, moved to S's device."""
    s = sampler.state
    groups = partition(score, s.pi_high, s.pi_low)
    where = None if regions is None else regions.to(score.device)
    return ScoreMaps(score, groups, prob, unasked.to(score.device), where)


def round_budget(
    expected: int,
    spent: dict[str, int] | dict[str, float],
    cap: int,
    pass_end: bool,
    call: int = 0,
) -> BudgetView:
    """A round's budget view: M_e as the server holds it, the spent read at the round's start
    (plus what this round posted so far; seconds per group under a seconds budget), no window
    (nobody knows when a session ends: the pace sets the round's ``cap``), and whether these
    images end a pass (an epoch). ``call`` counts the session's selections: a run that asks
    pixels and regions (``Alternate``) takes pixels on even calls and regions on odd ones."""
    return BudgetView(expected, spent, iteration=call, cap=cap, epoch_end=pass_end)


def created_time(answer: dict) -> float:
    """The answer's ``created_at`` as a Unix time (a naive time is UTC)."""
    stamp = answer.get("created_at")
    if not stamp:
        return time.time()
    when = datetime.fromisoformat(str(stamp))
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


@dataclass
class Query:
    row: int  # bank row of its image
    y: int
    x: int
    since: float  # when posted, or last seen claimed (time.monotonic)
    group: str = "other"  # as the server names it
    cells: list[tuple[int, int]] | None = None  # a region query's pixels (y, x); None: a pixel


@dataclass
class Outstanding:
    """Queries posted and not yet answered, withdrawn or given up (skipped, expired)."""

    queries: dict[int, Query] = field(default_factory=dict)

    def add(
        self,
        qid: int,
        row: int,
        y: int,
        x: int,
        now: float | None = None,
        group: str = "other",
        cells: list[tuple[int, int]] | None = None,
    ) -> None:
        when = time.monotonic() if now is None else now
        self.queries[qid] = Query(row, y, x, when, group, cells)

    def in_flight(self) -> dict[tuple[str, bool], int]:
        """Queries outstanding per (group, is a region query)."""
        out: dict[tuple[str, bool], int] = {}
        for q in self.queries.values():
            key = (q.group, q.cells is not None)
            out[key] = out.get(key, 0) + 1
        return out

    def drop(self, ids: Any) -> list[Query]:
        return [q for q in (self.queries.pop(int(i), None) for i in ids) if q is not None]

    def stale(self, minutes: float, now: float | None = None) -> list[int]:
        now = time.monotonic() if now is None else now
        return [i for i, q in self.queries.items() if now - q.since >= 60 * minutes]

    def touch(self, ids: Any, now: float | None = None) -> None:
        """Seen claimed: its age starts again (nobody claimed it since ``now``)."""
        now = time.monotonic() if now is None else now
        for i in ids:
            if int(i) in self.queries:
                self.queries[int(i)].since = now

    def rows(self) -> list[int]:
        return sorted({q.row for q in self.queries.values()})

    def sure(self, score_rows: Callable[[list[int]], torch.Tensor], quantile: float) -> set[int]:
        """The queries whose pixel the model is sure of, scored now by ``score_rows`` (bank
        rows -> (B,H,W)): its score under the ``quantile`` of those images' scores (G_l by the
        calibration's own rule; the absolute pi_low drifts out of use as the model grows
        confident)."""
        rows = self.rows()
        if not rows:
            return set()
        where = {row: i for i, row in enumerate(rows)}
        score = torch.cat([score_rows(rows[i : i + 8]) for i in range(0, len(rows), 8)])
        low = float(torch.quantile(score.flatten()[:100_000], quantile))
        return {i for i, q in self.queries.items() if float(score[where[q.row], q.y, q.x]) < low}

    def __len__(self) -> int:
        return len(self.queries)


@dataclass
class Freshness:
    """Labels merged into the bank and not yet in a gradient step: bank row -> the times
    (wall clock, the answer's ``created_at``) of its fresh answers. A step over a row makes
    them trained; their waits give the answer-to-gradient latency."""

    fresh: dict[int, list[tuple[Pixel, float]]] = field(default_factory=dict)
    trained: set[Pixel] = field(default_factory=set)
    waits: list[float] = field(default_factory=list)  # seconds, one per answer trained on

    def add(self, row: int, pixel: Pixel, created: float) -> None:
        self.fresh.setdefault(row, []).append((pixel, created))

    def next_rows(self, k: int) -> list[int]:
        """Up to ``k`` rows with fresh labels, the longest-waiting first."""
        return sorted(self.fresh, key=lambda r: min(t for _, t in self.fresh[r]))[:k]

    def stepped(self, rows: Any, now: float | None = None) -> None:
        now = time.time() if now is None else now
        for row in {int(r) for r in rows}:
            for pixel, created in self.fresh.pop(row, []):
                self.trained.add(pixel)
                self.waits.append(max(0.0, now - created))

    def summary(self) -> dict[str, float | int | None]:
        waits = sorted(self.waits)
        if not waits:
            return {"answers_trained": 0, "median_s": None, "p99_s": None, "max_s": None}
        p99 = waits[min(len(waits) - 1, math.ceil(0.99 * len(waits)) - 1)]
        return {
            "answers_trained": len(waits),
            "median_s": round(waits[len(waits) // 2], 3),
            "p99_s": round(p99, 3),
            "max_s": round(waits[-1], 3),
        }


class Picker:
    """Orders of the target images: passes in a fresh random order each, one for picking
    rounds' pixels and one for training batches (the images with fresh labels go first)."""

    def __init__(self, n: int, generator: torch.Generator) -> None:
        self.n, self.gen = n, generator
        self._orders: dict[str, list[int]] = {"pick": [], "train": []}
        self.wrapped = False  # the last chunk of pick_rows ended a pass

    def _next(self, name: str) -> int:
        order = self._orders[name]
        if not order:
            order.extend(torch.randperm(self.n, generator=self.gen).tolist())
        return order.pop(0)

    def pick_rows(self, k: int) -> Any:
        """Chunks of ``k`` rows, one pass over the images at most."""
        left = self.n
        while left > 0:
            rows = [self._next("pick") for _ in range(min(k, left))]
            left -= len(rows)
            self.wrapped = not self._orders["pick"]
            yield rows

    def train_rows(self, first: list[int], k: int) -> list[int]:
        """``first`` (fresh labels), then the training pass's next rows, ``k`` distinct."""
        rows = list(dict.fromkeys(first))[:k]
        for _ in range(4 * self.n):
            if len(rows) >= min(k, self.n):
                break
            row = self._next("train")
            if row not in rows:
                rows.append(row)
        return rows
