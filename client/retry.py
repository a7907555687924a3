"""One retry policy for every client of the service: capped exponential backoff with jitter.

Jitter spreads the retries of many clients that failed together (an outage seen by every
annotator at once) instead of letting them retry in lockstep. ``"equal"`` jitter waits between
half and all of the capped exponential delay, so a policy still guarantees a minimum total wait
(what rides out a server restart); ``"full"`` jitter waits anywhere from 0 to the delay.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

Jitter = Literal["full", "equal", "none"]


@dataclass(frozen=True)
class RetryPolicy:
    """``max_tries`` attempts in all; before retry ``n`` (0-based) wait about
    ``min(max_delay, base_delay * 2**n)``, shortened by the jitter."""

    max_tries: int = 17
    base_delay: float = 0.2
    max_delay: float = 5.0
    jitter: Jitter = "equal"

    def __post_init__(self) -> None:
        if self.max_tries < 1:
            raise ValueError("max_tries must be at least 1")
        if self.base_delay < 0 or self.max_delay < 0:
            raise ValueError("delays must not be negative")
        if self.jitter not in ("full", "equal", "none"):
            raise ValueError(f"jitter must be 'full', 'equal' or 'none', not {self.jitter!r}")

    @property
    def retries(self) -> int:
        return self.max_tries - 1

    def cap(self, attempt: int) -> float:
        """The longest wait before retry ``attempt`` (0-based)."""
        return min(self.max_delay, self.base_delay * 2 ** min(attempt, 62))

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry ``attempt`` (0-based), drawn from ``rng``."""
        cap = self.cap(attempt)
        draw = (rng or random).random()
        if self.jitter == "full":
            return cap * draw
        if self.jitter == "equal":
            return cap / 2 + cap / 2 * draw
        return cap

    def total_bounds(self) -> tuple[float, float]:
        """The least and the most seconds all retries together can wait."""
        most = sum(self.cap(a) for a in range(self.retries))
        least = {"full": 0.0, "equal": most / 2, "none": most}[self.jitter]
        return least, most


# 16 retries: 30.6 s to 61.2 s of waiting in all, long enough to ride out a server restart
# (kill, start, migrate check, ready) even with the shortest draws
DEFAULT_RETRY = RetryPolicy()
