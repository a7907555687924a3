"""Seconds of one image visit per strategy's selection, at 512x1024 and 1024x2048, one thread.

    nice .venv/bin/python scripts/selection_bench.py [--sizes 512x1024 1024x2048]
        [--visits 6] [--budget 0.017] [--strategies ...] [--out FILE.json]

One target image visited ``--visits`` times (the query window), budget ``--budget`` of its
pixels: each visit asks the strategy's share (1,486 pixels a visit at 512x1024 and 1.7 %, as
RIPU-PA in issue 20), the asked pixels stay asked. Each strategy's selection policy (the one
the benchmark loop and sessions call, :func:`trainer.selection.policy.make_policy`) is called
directly, from the softmax (and S, the groups) to the mask: the strategy's own score
(RIPU's impurity and entropy, PixelPick's margin, mcu-cap's impurity) counts, the network and
S (computed by every step anyway) do not. The score maps look like a network's
(:func:`trainer.bench.scenes.network_like`: 19 class logits at 1/8 of the size, a blocky
layout of classes plus noise, upsampled bilinearly; the aux head's with more noise). Prints
and writes per strategy and size the CPU seconds of a visit (``time.process_time``, one
thread: what one core spends, less sensitive than wall time to a busy machine), their median
and max over the visits, the wall seconds, and the pixels spent against M_e. The whole
schedule at 512x1024 over every budget is ``adamcu dry-run`` (:mod:`trainer.bench.dryrun`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from trainer.bench.scenes import blocky_layout, network_like
from trainer.config import TrainConfig
from trainer.selection.policy import make_policy
from trainer.selection.sampling import ActiveSampler
from trainer.selection.uncertainty import partition, uncertainty_score
from trainer.selection.views import BudgetView, QueryWindow, ScoreMaps

STRATEGIES = (
    "random",
    "entropy",
    "ripu-topk",
    "algorithm1",
    "pixelpick",
    "image-wise",
    "ripu-pa",
    "ripu-ra",
    "mcu-cap",
)


def maps(h: int, w: int, classes: int = 19, seed: int = 0):
    """(prob (1,C,H,W), S (1,H,W), groups (1,H,W)) that look like a network's."""
    g = torch.Generator().manual_seed(seed)
    logits, aux = network_like(blocky_layout(h, w, classes, g), classes, g)
    score = uncertainty_score(logits, aux)
    flat = score.flatten()[torch.randperm(score.numel(), generator=g)[:100_000]]
    hi, lo = (float(torch.quantile(flat, q)) for q in (0.99, 0.5))
    return logits.softmax(1), score, partition(score, hi, lo)


CONFIG_NAME = {"ripu-topk": "ripu"}  # the old plain top-k form of RIPU's score


def selector(name: str, prob, score, groups, window: QueryWindow, gen):
    """The strategy's policy (the one the benchmark loop and sessions call) at visit ``i``."""
    selection = CONFIG_NAME.get(name, name)
    policy = make_policy(TrainConfig(selection=selection), ActiveSampler())

    def run(i: int, unasked: torch.Tensor, spent: dict[str, int]) -> tuple[torch.Tensor, str]:
        maps = ScoreMaps(score, groups, prob, unasked)
        return policy.select(maps, BudgetView.at(window, i, spent), gen)

    return run


def bench(name: str, h: int, w: int, visits: int, budget: float) -> dict:
    prob, score, groups = maps(h, w)
    expected = round(budget * h * w)
    window = QueryWindow.plan(expected, visits, 1, 1.0)
    run = selector(name, prob, score, groups, window, torch.Generator().manual_seed(0))
    unasked = torch.ones(1, h, w, dtype=torch.bool)
    spent: dict[str, int] = {}
    cpu, wall = [], []
    for i in range(visits):
        c0, w0 = time.process_time(), time.perf_counter()
        mask, group = run(i, unasked, spent)
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
        unasked &= ~mask
        spent[group] = spent.get(group, 0) + int(mask.sum())
    return {
        "strategy": name,
        "size": f"{h}x{w}",
        "cpu_seconds": [round(t, 4) for t in cpu],
        "cpu_median": round(statistics.median(cpu), 4),
        "cpu_max": round(max(cpu), 4),
        "wall_median": round(statistics.median(wall), 4),
        "expected": expected,
        "spent": sum(spent.values()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", nargs="+", default=["512x1024", "1024x2048"])
    ap.add_argument("--visits", type=int, default=6)
    ap.add_argument("--budget", type=float, default=0.017)
    ap.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=STRATEGIES)
    ap.add_argument("--out", type=Path, default=Path("outputs/selection_bench.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    print(f"{'strategy':<11} {'size':>9} {'cpu med':>8} {'cpu max':>8} {'wall med':>8}  spent/M_e")
    for size in args.sizes:
        h, w = (int(v) for v in size.split("x"))
        for name in args.strategies:
            r = bench(name, h, w, args.visits, args.budget)
            rows.append(r)
            print(
                f"{name:<11} {r['size']:>9} {r['cpu_median']:>8.3f} {r['cpu_max']:>8.3f} "
                f"{r['wall_median']:>8.3f}  {r['spent']}/{r['expected']}",
                flush=True,
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"visits": args.visits, "budget": args.budget, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
