"""``adamcu dry-run``'s settings and arguments (no torch: the command line imports this)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

# one of each selection policy: al-as, mcu-i, mcu-d and p2p select as full does
STRATEGIES = ("random", "entropy", "ripu", "ripu-ra", "pixelpick", "image-wise", "full", "mcu-cap")
BUDGETS = (0.001, 0.017, 0.034, 0.068, 0.168)  # Table I's and the 0.1 % row


@dataclass(frozen=True)
class DryRunSpec:
    """The target set (images of height x width, classes), the schedule in passes, the
    scenes cached, and how many iterations' MCU sets are built."""

    height: int = 512
    width: int = 1024
    images: int = 2975
    classes: int = 19
    passes: float = 27.0
    query_passes: float = 6.0
    scenes: int = 4
    mcu_steps: int = 60
    seed: int = 0


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = DryRunSpec()
    p.add_argument("--height", type=int, default=d.height)
    p.add_argument("--width", type=int, default=d.width)
    p.add_argument("--images", type=int, default=d.images, help="target-train images")
    p.add_argument("--classes", type=int, default=d.classes)
    p.add_argument("--budgets", default=",".join(str(b) for b in BUDGETS), help="comma list")
    p.add_argument("--strategies", default=",".join(STRATEGIES), help="comma list")
    p.add_argument("--passes", type=float, default=d.passes)
    p.add_argument("--query-passes", type=float, default=d.query_passes)
    p.add_argument("--scenes", type=int, default=d.scenes, help="scenes cached (memory)")
    p.add_argument("--mcu-steps", type=int, default=d.mcu_steps, help="iterations sampled")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--out", default="outputs/dryrun.json")
    p.add_argument(
        "--progress-seconds",
        type=float,
        default=60.0,
        help="seconds between a row's progress lines (a bar on a terminal; 0: none)",
    )
