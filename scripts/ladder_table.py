"""The resolution ladder's tables (issue 20 item 5) from `adamcu bench --preset ladder` outputs.

Reads any number of ``results.json`` files (the 64x128 rung in one, the 256x512 rung one per
seed: ``scripts/ladder_large.sh``), groups the runs by shift, image size, strategy and budget,
and prints Markdown: target-test mIoU (reported) and target-val mIoU (what every choice reads),
mean ± population std over the seeds that finished, n where fewer than 3; then what differs
between the sizes: labels per target image at each budget, whether mcu-cap's pseudo-label
rule (``cap_pseudo_below_rate``, a share of the target pixels) fires, selection seconds and
wall seconds per run.

    .venv/bin/python scripts/ladder_table.py outputs/ladder-64x128/results.json \\
        outputs/ladder-256x512-moderate-s*/results.json
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from trainer.bench.presets import LADDER
from trainer.bench.report import NAMES
from trainer.config import TrainConfig
from trainer.strategies import BUDGET_FREE

Key = tuple[str, str, str, float]  # shift, size "HxW", strategy, budget (None: budget-free)


def load(paths: list[Path]) -> dict[Key, list[dict[str, Any]]]:
    """Runs by (shift, size, strategy, budget); budget-free strategies under budget 0."""
    runs: dict[Key, list[dict[str, Any]]] = defaultdict(list)
    for path in paths:
        report = json.loads(path.read_text())
        height, width = report.get("size", (64, 128))
        for r in report["results"]:
            budget = 0.0 if r["strategy"] in BUDGET_FREE else r["budget_rate"]
            r = {**r, "target_images": _target_images(r, height * width)}
            runs[(r["shift"], f"{height}x{width}", r["strategy"], budget)].append(r)
    return runs


def _target_images(run: dict[str, Any], image_pixels: int) -> int:
    """Target-train images of a run: its labeled pixels over their share, in images."""
    if not run["labeled_rate"]:
        return 0
    return round(run["labeled_pixels"] / run["labeled_rate"] / image_pixels)


def _cell(values: list[float]) -> str:
    if not values:
        return ""
    mean = statistics.fmean(values)
    if len(values) == 1:
        return f"{mean:.1f} (n=1)"
    n = "" if len(values) >= 3 else f" (n={len(values)})"
    return f"{mean:.1f} ± {statistics.pstdev(values):.1f}{n}"


def table(runs: dict[Key, list[dict[str, Any]]], shift: str, metric: str) -> str:
    """Rows: the ladder's strategies; columns: size x budget (budget-free rows: one cell)."""
    sizes = sorted({k[1] for k in runs if k[0] == shift}, key=lambda s: int(s.split("x")[0]))
    budgets = sorted({k[3] for k in runs if k[0] == shift and k[3] > 0})
    cols = [(size, b) for size in sizes for b in budgets]
    head = " | ".join(f"{size} {100 * b:g}%" for size, b in cols)
    lines = [f"| strategy | {head} |", "|---" * (len(cols) + 1) + "|"]
    for s in LADDER:
        cells = []
        for size, b in cols:
            free = s in BUDGET_FREE
            if free and b != budgets[0]:
                cells.append("")
                continue
            found = runs.get((shift, size, s, 0.0 if free else b), [])
            cells.append(_cell([r[metric] for r in found]))
        lines.append(f"| {NAMES.get(s, s)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def differences(runs: dict[Key, list[dict[str, Any]]], shift: str) -> str:
    """Labels per target image, the pseudo-label rule, selection and wall seconds per run."""
    rule = TrainConfig().cap_pseudo_below_rate
    lines = [
        "| size | budget | labels per target image (M_e / images) | mcu-cap pseudo labels "
        f"(M_e < {100 * rule:g} % of the pixels) | selection s per run (mcu-cap / full / random) | "
        "wall s per run (mcu-cap / full / random) |",
        "|---|---|---|---|---|---|",
    ]
    for (sh, size, s, b), found in sorted(runs.items()):
        if sh != shift or s != "mcu-cap":
            continue
        per_image = found[0]["expected_pixels"] / max(1, found[0]["target_images"])
        sel, wall = [], []
        for name in ("mcu-cap", "full", "random"):
            rs = runs.get((sh, size, name, b), [])
            sel.append(_mean([r["timings"].get("selection", 0.0) for r in rs]))
            wall.append(_mean([r["seconds"] for r in rs]))
        lines.append(
            f"| {size} | {100 * b:g}% | {per_image:.1f} | {'on' if b < rule else 'off'}"
            f" | {' / '.join(sel)} | {' / '.join(wall)} |"
        )
    return "\n".join(lines)


def _mean(values: list[float]) -> str:
    return f"{statistics.fmean(values):.1f}" if values else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="+", type=Path)
    args = parser.parse_args()
    runs = load([p for p in args.results if p.is_file()])
    for shift in sorted({k[0] for k in runs}, key=lambda s: s != "moderate"):
        for metric, what in (("test_miou", "target-test"), ("val_miou", "target-val")):
            print(f"\n{what} mIoU, shift `{shift}`:\n\n{table(runs, shift, metric)}")
        print(f"\nwhat differs between the sizes, shift `{shift}`:\n\n{differences(runs, shift)}")


if __name__ == "__main__":
    main()
