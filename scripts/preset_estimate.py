"""Seconds per adaptation iteration of each strategy, and what that makes of a preset's grid.

Times ``--iterations`` adaptation iterations of each strategy through ``run_strategy`` on the
bundled benchmark (64x128, one thread, as ``adamcu bench --workers 2`` runs them), then
estimates a preset's wall time on ``--workers`` workers from its runs and iterations
(``trainer.bench.grid.adaptation_iterations``). Prints the numbers and writes them to ``--out``.

    .venv/bin/python scripts/preset_estimate.py --preset standard --out estimate.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from trainer.bench.experiment import run_strategy  # noqa: E402
from trainer.bench.grid import adaptation_iterations  # noqa: E402
from trainer.bench.presets import PRESETS  # noqa: E402
from trainer.config import TrainConfig  # noqa: E402
from trainer.data.synth import generate_benchmark  # noqa: E402
from trainer.loop.train import load_data  # noqa: E402
from trainer.strategies import configure  # noqa: E402

COUNTS = {"source-train": 40, "target-train": 40, "target-val": 10, "target-test": 10}


def seconds_per_iteration(strategies: list[str], iterations: int, work: Path) -> dict[str, float]:
    data = work / "data"
    generate_benchmark(data, counts=COUNTS)
    out = {}
    for strategy in strategies:
        base = TrainConfig(data_root=str(data), pretrain_iterations=5, threads=1)
        cfg = configure(base, strategy, iterations=iterations, eval_every=10**6)
        result = run_strategy(cfg, load_data(cfg), work / "cache")
        out[strategy] = sum(result["timings"].values()) / iterations
        print(f"{strategy:<12} {out[strategy]:.4f} s/it", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", default="standard", choices=sorted(PRESETS))
    p.add_argument("--strategies", nargs="+", default=["random", "al-as", "full", "supervised"])
    p.add_argument("--iterations", type=int, default=60)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--overhead", type=float, default=0.3, help="pre-training + evaluation share")
    p.add_argument("--work", type=Path, default=ROOT / "outputs" / "preset_estimate")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    started = time.perf_counter()
    per_it = seconds_per_iteration(args.strategies, args.iterations, args.work)
    mean = statistics.fmean(per_it.values())
    grid = adaptation_iterations(PRESETS[args.preset])
    adapt_s = grid["adapt_iterations"] * mean
    wall = adapt_s * (1 + args.overhead) / args.workers
    print(f"{args.preset}: {grid} -> {adapt_s:.0f} s of adaptation at {mean:.3f} s/it;")
    print(f"  ~{wall / 60:.0f} min on {args.workers} workers (+{100 * args.overhead:.0f} %)")
    report = {"s_per_iteration": per_it, "mean": mean, "preset": args.preset, **grid}
    report |= {"estimate_minutes": wall / 60, "workers": args.workers, "overhead": args.overhead}
    report["seconds"] = time.perf_counter() - started
    if args.out:
        args.out.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
