"""The benchmark's reports: tables shaped like the paper's Table I and Table VI, the label
diagnostics table, the mIoU-vs-budget plot and the label plot, one set per domain shift.

``tables.md`` holds every shift's tables; the plots of the first shift are
``miou_vs_budget.png`` and ``labels.png``, those of another shift ``miou_vs_budget_<shift>.png``
and ``labels_<shift>.png``. Model selection uses target-val; the tables report target-test.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from trainer.bench.diagnostics import plot_labels
from trainer.strategies import BUDGET_FREE, STRATEGIES

NAMES = {"full": "full (ADA-MCU)"}  # how the tables and plots name a strategy


def summarize(results: list[dict[str, Any]]) -> dict[tuple[str, float], tuple[float, float, int]]:
    """(strategy, budget) -> (mean test mIoU, spread = population std over seeds, n)."""
    groups: dict[tuple[str, float], list[float]] = {}
    for r in results:
        groups.setdefault((r["strategy"], r["budget_rate"]), []).append(r["test_miou"])
    return {k: (statistics.fmean(v), statistics.pstdev(v), len(v)) for k, v in groups.items()}


def _budgets(results: list[dict[str, Any]]) -> list[float]:
    return sorted({r["budget_rate"] for r in results if r["strategy"] not in BUDGET_FREE})


def _order(results: list[dict[str, Any]]) -> list[str]:
    ran = {r["strategy"] for r in results}
    return [s for s in STRATEGIES if s in ran] + sorted(ran - set(STRATEGIES))


def table_one(results: list[dict[str, Any]]) -> str:
    """Rows = strategies, columns = budgets (% of target pixels), cells = mean ± std; a
    budget-free strategy fills its first column, a strategy not run at a budget shows "-"."""
    summary = summarize(results)
    budgets = _budgets(results)
    head = "| strategy | " + " | ".join(f"{100 * b:g}%" for b in budgets) + " |"
    lines = [head, "|" + "---|" * (len(budgets) + 1)]
    for s in _order(results):
        cells = []
        for i, b in enumerate(budgets):
            if s in BUDGET_FREE:
                m = next((v for k, v in summary.items() if k[0] == s), None) if i == 0 else None
            else:
                m = summary.get((s, b))
            cells.append(f"{m[0]:.1f} ± {m[1]:.1f}" if m else ("" if s in BUDGET_FREE else "-"))
        lines.append(f"| {NAMES.get(s, s)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def table_six(results: list[dict[str, Any]], class_names: list[str], budget: float) -> str:
    """Per-class test IoU at ``budget``, mean over seeds (Table VI's shape), the budget-free
    rows beside it."""
    rows: dict[str, list[list[float | None]]] = {}
    for r in results:
        if r["budget_rate"] == budget or r["strategy"] in BUDGET_FREE:
            rows.setdefault(r["strategy"], []).append(r["test_per_class_iou"] + [r["test_miou"]])
    lines = [
        "| strategy | " + " | ".join(class_names) + " | mIoU |",
        "|" + "---|" * (len(class_names) + 2),
    ]
    for s in (s for s in _order(results) if s in rows):
        cols = zip(*rows[s], strict=True)
        means = [statistics.fmean([v for v in c if v is not None] or [float("nan")]) for c in cols]
        lines.append(f"| {NAMES.get(s, s)} | " + " | ".join(f"{v:.1f}" for v in means) + " |")
    return f"Budget {100 * budget:g}% of target pixels.\n\n" + "\n".join(lines)


def table_labels(results: list[dict[str, Any]]) -> str:
    """Label diagnostics, mean over seeds: labels per image (median), share of the top 10 %
    of images, the model's error at the pixels it asked about, queries per iteration."""
    keys = (
        ("labels_per_image_median", "{:.0f}", 1),
        ("top10_share", "{:.0f} %", 100),
        ("query_error_rate", "{:.0f} %", 100),
        ("queries_per_iteration_max", "{:.0f}", 1),
        ("queries_per_iteration_mean", "{:.1f}", 1),
    )
    head = "| strategy | budget | labels/image (median) | top-10 % images hold | "
    head += "model wrong where asked | queries/it max | queries/it mean |"
    lines = [head, "|" + "---|" * 7]
    for s in _order(results):
        for b in _budgets(results):
            runs = [r["labels"] for r in results if r["strategy"] == s and r["budget_rate"] == b]
            runs = [d for d in runs if d]
            if not runs:
                continue
            cells = []
            for key, fmt, scale in keys:
                vals = [d[key] for d in runs if d.get(key) is not None]
                cells.append(fmt.format(scale * statistics.fmean(vals)) if vals else "-")
            lines.append(f"| {NAMES.get(s, s)} | {100 * b:g}% | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_reports(report: dict[str, Any], out_dir: Path, data_dirs: dict[str, Path]) -> None:
    """``results.json``, ``tables.md`` and the plots; ``data_dirs``: shift -> data folder."""
    (out_dir / "results.json").write_text(json.dumps(report, indent=1))
    md = [f"# Benchmark `{report['preset']}`", ""]
    md += ["Target-test mIoU (%), mean ± std over seeds; model selection on target-val.", ""]
    for i, (shift, data_dir) in enumerate(data_dirs.items()):
        results = [r for r in report["results"] if r.get("shift", shift) == shift]
        names = [c["name"] for c in json.loads((data_dir / "classes.json").read_text())["classes"]]
        summary = summarize(results)
        gap = _gap(summary)
        budgets = _budgets(results) or [0.0]
        md += [f"## Shift `{shift}`", "", table_one(results), ""]
        md += [f"Supervised minus source-only: {gap:.1f} points.", ""] if gap is not None else []
        md += ["### Per class (Table VI shape)", ""]
        md += [table_six(results, names, budgets[len(budgets) // 2]), ""]
        md += ["### Label diagnostics", "", table_labels(results), ""]
        tail = "" if i == 0 else f"_{shift}"
        plot(summary, out_dir / f"miou_vs_budget{tail}.png", shift)
        plot_labels(results, out_dir / f"labels{tail}.png")
    md.append(f"Wall time: {report['seconds'] / 60:.1f} min.")
    (out_dir / "tables.md").write_text("\n".join(md) + "\n")


def _gap(summary: dict[tuple[str, float], tuple[float, float, int]]) -> float | None:
    sup = [v[0] for k, v in summary.items() if k[0] == "supervised"]
    src = [v[0] for k, v in summary.items() if k[0] == "source-only"]
    return sup[0] - src[0] if sup and src else None


def plot(
    summary: dict[tuple[str, float], tuple[float, float, int]], path: Path, shift: str = ""
) -> None:
    """mIoU against the labeled share of target pixels, one line per strategy, the budgets
    labeled on the axis; the budget-free strategies as horizontal lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8.5, 4.5))
    colors = plt.get_cmap("tab20").colors  # 15 strategies: the default cycle repeats after 10
    dashes = iter(["--", ":", "-."])  # budget-free lines, after source-only's grey dash
    names = [s for s in STRATEGIES if any(k[0] == s for k in summary)]
    names += sorted({k[0] for k in summary} - set(STRATEGIES))
    budgets = sorted({k[1] for k in summary if k[0] not in BUDGET_FREE})
    for i, s in enumerate(names):
        pts = sorted((k[1], v) for k, v in summary.items() if k[0] == s)
        label = NAMES.get(s, s)
        if s in BUDGET_FREE:
            color, style = ("grey", "--") if s == "source-only" else ("black", next(dashes, "--"))
            ax.axhline(pts[0][1][0], linestyle=style, linewidth=1, label=label, color=color)
            continue
        xs = [100 * b for b, _ in pts]
        width = 2.2 if s == "full" else 1.2
        ax.errorbar(
            xs,
            [v[0] for _, v in pts],
            yerr=[v[1] for _, v in pts],
            marker="o",
            capsize=3,
            label=label,
            linewidth=width,
            color=colors[i % len(colors)],
        )
    ax.set_xscale("log")
    if budgets:
        ax.set_xticks([100 * b for b in budgets], [f"{100 * b:g}%" for b in budgets])
        ax.minorticks_off()
    ax.set_xlabel("labeled target pixels (% of all)")
    ax.set_ylabel("target-test mIoU (%)")
    if shift:
        ax.set_title(f"shift: {shift}", fontsize=9)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
