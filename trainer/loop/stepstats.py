"""What one adaptation step reports, with its device values read lazily.

The step leaves its losses (and the count of asked pixels the model got wrong) as detached
0-dim tensors; they come to the host together, in one copy, the first time one of them is
read, so a loop that reads them every N steps synchronises with the device every N steps.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch


@dataclass
class StepStats:
    """``loss``, ``parts``, ``query_wrong`` and ``inexact_draw`` are host values on reading;
    the step writes ``raw`` (name -> detached tensor), ``raw_loss``, ``raw_wrong`` and
    ``raw_inexact`` instead (``raw_inexact``: the padded MCU draw came out short)."""

    queried: int = 0
    answered: int = 0
    phase: str = ""
    # region queries (issue 24): regions asked, their labelled pixels, those whose GT differs
    regions: int = 0
    region_pixels: int = 0
    region_noisy: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    raw: dict[str, torch.Tensor] = field(default_factory=dict)
    raw_loss: torch.Tensor | float = 0.0
    raw_wrong: torch.Tensor | int = 0
    raw_inexact: torch.Tensor | bool = False
    _host: dict[str, float] | None = field(default=None, repr=False)

    def _resolve(self) -> dict[str, float]:
        if self._host is None:
            names = list(self.raw) + ["<loss>", "<wrong>", "<inexact>"]
            values = list(self.raw.values()) + [self.raw_loss, self.raw_wrong, self.raw_inexact]
            device = next((v.device for v in values if isinstance(v, torch.Tensor)), None)
            if device is None:
                host = [float(v) for v in values]
            else:
                host = torch.stack(
                    [torch.as_tensor(v, device=device).float().reshape(()) for v in values]
                ).tolist()  # the one host copy
            self._host = dict(zip(names, host, strict=True))
        return self._host

    @property
    def loss(self) -> float:
        return self._resolve()["<loss>"]

    @property
    def parts(self) -> dict[str, float]:
        host = self._resolve()
        return {k: host[k] for k in self.raw}

    @property
    def query_wrong(self) -> int:
        return int(self._resolve()["<wrong>"])

    @property
    def inexact_draw(self) -> bool:
        return bool(self._resolve()["<inexact>"])


class Timer:
    """Seconds per named lap, the device synced before each reading."""

    def __init__(self, sync: Callable[[], None]) -> None:
        self.sync, self.seconds, self._t = sync, {}, time.perf_counter()

    def lap(self, name: str) -> None:
        self.sync()
        now = time.perf_counter()
        self.seconds[name] = self.seconds.get(name, 0.0) + now - self._t
        self._t = now
