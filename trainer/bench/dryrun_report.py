"""``adamcu dry-run``: the loop over strategies and budgets, the summary of
each run (the JSON's rows) and the printed table. The runs are :mod:`trainer.bench.dryrun`'s, the
arguments :mod:`trainer.bench.dryrun_args`'.

Each row: ``expected`` (M_e, the service's rounding of rate x pixels), ``spent`` (labels in
the bank), ``spent_high`` / ``spent_medium`` (of them, asked from G_h / G_m: Algorithm 1's
two phases; 0 for the baselines, whose group is their own), ``spent_by_group``,
``labels_per_image`` (median, p90, max), ``class_shares`` (of the labels),
``selection_seconds_per_visit`` (CPU seconds of one policy call over the images it selects
in, one thread: median, max), ``mcu`` (per sampled iteration: target labels in the batch,
G_l pseudo labels, pixels in the MCU sets, of them target pixels and anchors: median, p90,
max; null for strategies without MCUs), ``peak_rss_mb`` (the process's so far) and the
run's CPU and wall seconds. The JSON is rewritten after every row.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from trainer.bench.dryrun import peak_rss_mb, run_one
from trainer.bench.dryrun_args import DryRunSpec
from trainer.bench.scenes import SceneCache
from trainer.loop.progress import Progress
from trainer.strategies import BUDGET_FREE
from trainer.strategies import STRATEGIES as ALL_STRATEGIES


def quantiles(values: list[float], digits: int = 1) -> dict[str, float]:
    """Median, p90 (nearest rank) and max of ``values`` (zeros when empty)."""
    if not values:
        return {"median": 0, "p90": 0, "max": 0}
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, max(0, -(-9 * len(ordered) // 10) - 1))]
    return {
        "median": round(statistics.median(ordered), digits),
        "p90": round(p90, digits),
        "max": round(ordered[-1], digits),
    }


def summarise(run: dict, classes: int) -> dict:
    """A run's JSON row (see the module docstring)."""
    bank = run.pop("bank")
    counts = bank.counts()
    spent = bank.num_labeled
    per_call = run.pop("call_seconds")
    per_visit = [s / run["images_per_call"] for s in per_call]
    by_class = bank.class_counts(classes).tolist()
    mcu = run.pop("mcu")
    return {
        **run,
        "spent": spent,
        "spent_high": counts.get("high", 0),
        "spent_medium": counts.get("medium", 0),
        "spent_by_group": {k: v for k, v in counts.items() if v},
        "labels_per_image": quantiles(bank.labeled_per_image().tolist()),
        "class_shares": [round(c / max(1, spent), 4) for c in by_class],
        "selection_calls": len(per_call),
        "selection_seconds_per_visit": {
            "median": round(statistics.median(per_visit), 4) if per_visit else 0.0,
            "max": round(max(per_visit), 4) if per_visit else 0.0,
        },
        "mcu_steps_sampled": len(mcu),
        "mcu": {k: quantiles([m[k] for m in mcu], 0) for k in mcu[0]} if mcu else None,
        "bank_mb": round(bank.nbytes() / 2**20, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "cpu_seconds": round(run["cpu_seconds"], 1),
        "wall_seconds": round(run["wall_seconds"], 1),
    }


HEADER = (
    f"{'strategy':<10} {'budget':>6} {'expected':>10} {'spent':>10} {'high':>9} {'medium':>10} "
    f"{'lab/img med/p90/max':>21} {'sel s med/max':>13} {'mcu px':>7} {'RSS MB':>7} {'wall s':>7}"
)


def table_line(r: dict) -> str:
    lab, sel = r["labels_per_image"], r["selection_seconds_per_visit"]
    mcu = "-" if r["mcu"] is None else f"{r['mcu']['pixels']['median']:.0f}"
    labels = f"{lab['median']:.0f}/{lab['p90']:.0f}/{lab['max']:.0f}"
    return (
        f"{r['strategy']:<10} {100 * r['budget']:>5.1f}% {r['expected']:>10} {r['spent']:>10} "
        f"{r['spent_high']:>9} {r['spent_medium']:>10} {labels:>21} "
        f"{sel['median']:>6.3f}/{sel['max']:.3f} {mcu:>7} {r['peak_rss_mb']:>7.0f} "
        f"{r['wall_seconds']:>7.0f}"
    )


def row_progress(
    label: str, every: float, clock: Callable[[], float] = time.monotonic
) -> Callable[[int], Progress]:
    """The bar of one row (:class:`trainer.loop.progress.Progress`, given the row's iteration
    count): a line every ``every`` seconds (a tqdm bar on a terminal), none at 0. The default
    schedule's rows run for tens of minutes each; a first row would otherwise be silent."""
    mode = "auto" if every > 0 else "off"
    return lambda total: Progress(total, f"dry-run {label}", mode=mode, every=every, clock=clock)


def _parse(args: argparse.Namespace) -> tuple[DryRunSpec, list[str], list[float]]:
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    for s in strategies:
        if s not in ALL_STRATEGIES or s in BUDGET_FREE:
            raise ValueError(f"dry-run strategy {s!r}: choose among the strategies that ask")
    budgets = [float(b) for b in args.budgets.split(",") if b.strip()]
    spec = DryRunSpec(
        args.height,
        args.width,
        args.images,
        args.classes,
        args.passes,
        args.query_passes,
        args.scenes,
        args.mcu_steps,
        args.seed,
    )
    return spec, strategies, budgets


def dry_run(args: argparse.Namespace) -> dict:
    """Every strategy at every budget; prints the table, writes ``args.out``; returns it."""
    spec, strategies, budgets = _parse(args)
    torch.set_num_threads(1)  # the selection's seconds are one core's
    start = time.perf_counter()
    cache = SceneCache.build(
        spec.images, spec.height, spec.width, spec.classes, spec.scenes, spec.seed
    )
    wrong = float((cache.pred != cache.label).float().mean())
    report = {
        "settings": {**spec.__dict__, "strategies": strategies, "budgets": budgets},
        "score_maps": "trainer.bench.scenes: bundled street scenes, network-like logits",
        "scene_error_rate": round(wrong, 4),
        "rows": [],
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    print(HEADER, flush=True)
    rows = len(strategies) * len(budgets)
    for strategy in strategies:
        for rate in budgets:
            label = f"row {len(report['rows']) + 1}/{rows} {strategy} {100 * rate:.1f}%"
            progress = row_progress(label, args.progress_seconds)
            row = summarise(run_one(spec, cache, strategy, rate, progress), spec.classes)
            report["rows"].append(row)
            report["seconds"] = round(time.perf_counter() - start, 1)
            out.write_text(json.dumps(report, indent=1))
            print(table_line(row), flush=True)
    report["all_spent"] = all(r["spent"] == r["expected"] for r in report["rows"])
    out.write_text(json.dumps(report, indent=1))
    print(
        f"took {report['seconds'] / 60:.1f} min; spent == expected everywhere: "
        f"{report['all_spent']}; {out}"
    )
    return report
