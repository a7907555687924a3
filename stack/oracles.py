"""The simulated oracles a loop starts (``adamcu loop``, ``scripts/stack.sh``): their command
line and the cost model flags handed to each (``adamcu-oracle --cost-model``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def oracle_args(
    url: str,
    run_id: int,
    i: int,
    data: Path,
    seed: int,
    cost_model: bool = False,
    cost_spread: float = 0.0,
    wait: float = 0.0,
) -> list[str]:
    """The command line of simulated oracle ``i`` (seed ``seed + i``; its token goes in its
    environment); ``cost_model``: it charges the cost model's seconds, with ``cost_spread``;
    ``wait`` > 0: an empty claim waits up to that many seconds on the server for new queries
    (``adamcu-oracle --wait``)."""
    args = [
        sys.executable,
        "-m",
        "oracle",
        "--server",
        url,
        "--run",
        str(run_id),
        "--data",
        str(data),
        "--seed",
        str(seed + i),
        "--idle-exit",
        "3",
    ]
    if wait > 0:
        args += ["--wait", f"{wait:g}"]
    if cost_model:
        args += ["--cost-model", "--cost-spread", str(cost_spread)]
    return args


def add_cost_model_arguments(p: argparse.ArgumentParser) -> None:
    """``--cost-model`` and ``--cost-spread``, handed to every simulated oracle."""
    p.add_argument(
        "--cost-model",
        action="store_true",
        help="the simulated oracles charge each answer and skip the cost model's seconds "
        "(adamcu-oracle --cost-model: pixel 2.4 s, region 3.0 s, skip 1.2 s), not the wall time",
    )
    p.add_argument(
        "--cost-spread",
        type=float,
        default=0.0,
        help="with --cost-model: each time is its mean x U[1 - spread, 1 + spread]",
    )


def cost_model_options(p: argparse.ArgumentParser, a: argparse.Namespace) -> dict[str, Any]:
    """The parsed ``--cost-model`` flags as LoopOptions fields; a bad spread is a usage error
    before anything starts."""
    if not 0.0 <= a.cost_spread < 1.0:
        p.error("--cost-spread must lie in [0, 1)")
    if a.cost_spread and not a.cost_model:
        p.error("--cost-spread needs --cost-model")
    return {"cost_model": a.cost_model, "cost_spread": a.cost_spread}
