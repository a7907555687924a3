"""When a session (``adamcu-worker --mode session``) ends, decided without I/O.

A session ends

- at once when an admin finishes the run (the session reads the run's status, or the server
  refuses a round because the run is finished): "admin";
- once the budget is answered (or nothing is reserved and a whole pass over the images found
  no pixel left to ask), every label is in a gradient step, one evaluation ran with every label
  in and target-val has not gained more than ``plateau_gain`` mIoU points for
  ``plateau_minutes``: "plateau", after ``cooldown_iterations`` more with the learning rate
  decayed to 0 (:class:`Cooldown`), if any.

The gain is counted from the value at which the plateau clock last started, not from the
previous best: a moving average of the weights (``--weight-average``) keeps rising by a few
tenths of a point an evaluation long after the last label, and with the clock restarted at
every new best the session did not end while it crept (``plateau_gain = 0`` is that rule). With
a gain of G points over ``plateau_minutes`` the session ends once target-val rises slower than
G / ``plateau_minutes`` points a minute; a real rise (a new label's effect, several points)
restarts the clock. The best weights are kept at every new best all the same (the learner).

The session hands the rule what it read (:class:`Standing`) and when it evaluated
(:meth:`EndRule.evaluated`); the rule keeps the clocks.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

from trainer.nets.model import poly_lr


@dataclass
class Cooldown:
    """The end of a session. Nobody knows when a session ends, so it trains at the constant
    rate; once the plateau is reached (budget answered, no target-val gain) it runs
    ``iterations`` more with the rate on the paper's poly schedule (section IV-B) from the
    constant rate down to 0, then ends. New answers during it call it off (:meth:`cancel`)."""

    iterations: int
    start: int | None = None  # the iteration it began at; None: not cooling

    def lr(self, base: float, iteration: int, power: float) -> float:
        if self.start is None:
            return base
        return poly_lr(base, iteration - self.start, self.iterations, power)

    def done(self, iteration: int) -> bool:
        return self.start is not None and iteration - self.start >= self.iterations

    def cancel(self) -> None:
        self.start = None


@dataclass
class Standing:
    """What the session read at a status check: the run's budget as the server counts it
    (``answered``, ``expected``, ``reserved``), whether a whole pass over the images found no
    pixel left to ask, whether merged answers wait for a gradient step, and the iteration."""

    budget: dict[str, Any]
    exhausted: bool
    fresh: bool
    iteration: int

    @property
    def answered(self) -> bool:
        """The budget is answered, or nothing is in flight and nothing is left to ask."""
        b = self.budget
        return b["answered"] >= b["expected"] or (b["reserved"] == 0 and self.exhausted)


class EndRule:
    """The plateau and the cooldown. :meth:`check` answers "plateau" (end now), "cooldown"
    (the cooldown began; the run goes on until :meth:`cooled`) or None (go on)."""

    def __init__(
        self, plateau_minutes: float, cooldown_iterations: int, plateau_gain: float = 0.0
    ) -> None:
        if plateau_gain < 0:
            raise ValueError(f"plateau_gain (mIoU points) must be >= 0, got {plateau_gain}")
        self.plateau_s = 60.0 * plateau_minutes
        self.gain = plateau_gain  # mIoU points (of 100) that restart the plateau clock
        self.cooldown = Cooldown(cooldown_iterations)
        self.done_at: float | None = None  # since when every label is in (time.monotonic)
        self.last_eval: float | None = None  # the last evaluation
        self.best_at: float | None = None  # the last gain of more than ``gain``: the clock
        self.mark: float | None = None  # target-val (mIoU %) when the clock last started

    def evaluated(self, miou: float, now: float | None = None) -> None:
        """An evaluation ran: target-val ``miou`` (mIoU in percent). More than ``gain``
        points above the value at the clock's last start restarts the plateau clock."""
        self.last_eval = time.monotonic() if now is None else now
        if self.mark is None or math.isnan(self.mark) or miou > self.mark + self.gain:
            self.mark, self.best_at = miou, self.last_eval

    @property
    def cooling_from(self) -> int | None:
        """The iteration the cooldown began at (None: not cooling), kept across a restart."""
        return self.cooldown.start

    def restart(self, cooling_from: int | None, now: float | None = None) -> None:
        """After a resume: the cooldown as it was saved; the plateau clock starts again."""
        self.cooldown.start = cooling_from
        self.best_at = time.monotonic() if now is None else now

    def lr(self, base: float, iteration: int, power: float) -> float:
        """The learning rate at ``iteration``: ``base``, decayed to 0 while cooling."""
        return self.cooldown.lr(base, iteration, power)

    def cooled(self, iteration: int) -> bool:
        """The cooldown ran its iterations: the session ends (after one last evaluation)."""
        return self.cooldown.done(iteration)

    def check(self, standing: Standing, now: float | None = None) -> str | None:
        """Called at each status check; new labels call the plateau and a cooldown off."""
        if not standing.answered or standing.fresh:
            self.done_at = None
            self.cooldown.cancel()
            return None
        now = time.monotonic() if now is None else now
        if self.done_at is None:
            self.done_at = now
        if self.last_eval is None or self.last_eval < self.done_at:
            return None  # one evaluation with every label in
        since = self.done_at if self.best_at is None else max(self.done_at, self.best_at)
        if self.cooldown.start is not None or now - since < self.plateau_s:
            return None  # cooling (cooled() ends it) or still improving
        if self.cooldown.iterations == 0:
            return "plateau"
        self.cooldown.start = standing.iteration
        return "cooldown"
