"""``adamcu bench``: every strategy x budgets x seeds on the bundled benchmark.

Writes ``results.json``, ``tables.md`` (shaped like the paper's Table I and Table VI) and
``miou_vs_budget.png`` into the output folder. Model selection uses target-val; the tables
report target-test.
"""

from __future__ import annotations

import json
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from trainer.bench.experiment import run_strategy
from trainer.bench.inputs import narrow, prepare_data
from trainer.config import TrainConfig
from trainer.data.synth import DEFAULT_SHIFT
from trainer.strategies import BUDGET_FREE, STRATEGIES, configure
from trainer.train import load_data, pick_device, pretrain

ALL = tuple(STRATEGIES)


@dataclass(frozen=True)
class Preset:
    counts: dict[str, int]
    strategies: tuple[str, ...]
    budgets: tuple[float, ...]
    seeds: tuple[int, ...]
    config: dict[str, Any] = field(default_factory=dict)
    shift: str = DEFAULT_SHIFT


PRESETS: dict[str, Preset] = {
    "smoke": Preset(
        counts={"source-train": 48, "target-train": 24, "target-val": 12, "target-test": 12},
        strategies=ALL,
        budgets=(0.017,),
        seeds=(0,),
        config={"pretrain_iterations": 30, "iterations": 8, "eval_every": 4},
    ),
    "quick": Preset(
        counts={"source-train": 300, "target-train": 200, "target-val": 50, "target-test": 100},
        strategies=("source-only", "random", "entropy", "al-as", "full", "supervised"),
        budgets=(0.017,),
        seeds=(0,),
        config={"pretrain_iterations": 800, "iterations": 250, "eval_every": 50},
    ),
    "standard": Preset(
        counts={"source-train": 500, "target-train": 500, "target-val": 100, "target-test": 200},
        strategies=ALL,
        budgets=(0.001, 0.005, 0.017, 0.068),
        seeds=(0, 1),
        config={"pretrain_iterations": 1500, "iterations": 300, "eval_every": 75},
    ),
}


def plan(preset: Preset, base: TrainConfig) -> list[TrainConfig]:
    """The grid of runs; budget-free strategies run once per seed."""
    runs = []
    for seed in preset.seeds:
        for strategy in preset.strategies:
            budgets = preset.budgets[-1:] if strategy in BUDGET_FREE else preset.budgets
            for rate in budgets:
                runs.append(configure(base, strategy, budget_rate=rate, seed=seed))
    return runs


def _run(cfg_dict: dict[str, Any], cache_dir: str, out_dir: str) -> dict[str, Any]:
    cfg = TrainConfig(**cfg_dict)
    name = f"{cfg.strategy}-b{cfg.budget_rate:g}-s{cfg.seed}.pt"
    ckpt = Path(out_dir) / "checkpoints" / name
    return run_strategy(cfg, load_data(cfg), Path(cache_dir), checkpoint=ckpt) | {
        "checkpoint": str(ckpt)
    }


def _pretrain(cfg_dict: dict[str, Any], cache_dir: str) -> float:
    cfg = TrainConfig(**cfg_dict)
    if cfg.threads:
        import torch

        torch.set_num_threads(cfg.threads)
    started = time.perf_counter()
    pretrain(cfg, load_data(cfg), pick_device(cfg.device), Path(cache_dir), progress=False)
    return time.perf_counter() - started


def run_bench(
    preset_name: str,
    out_dir: Path,
    data_dir: Path,
    *,
    workers: int = 2,
    base: TrainConfig | None = None,
    log=print,
    grid: tuple[list[str] | None, list[float] | None, list[int] | None] = (None, None, None),
) -> dict[str, Any]:
    """Generate (cached) data, or use a user's folder as it is (``inputs.prepare_data``),
    pre-train once per seed, run the grid (narrowed by ``grid`` = strategies, budgets, seeds),
    write the reports. Each run's checkpoint goes to ``out_dir/checkpoints/``."""
    preset = narrow(PRESETS[preset_name], *grid)
    started = time.perf_counter()
    cfg0 = base or TrainConfig()
    splits = [cfg0.source_split, cfg0.target_split, cfg0.val_split, cfg0.test_split]
    kind = prepare_data(data_dir, preset, splits)
    base = (base or TrainConfig()).replace(
        data_root=str(data_dir), threads=1 if workers > 1 else 0, **preset.config
    )
    runs = plan(preset, base)
    cache = out_dir / "cache"
    out_dir.mkdir(parents=True, exist_ok=True)
    log(f"bench {preset_name}: {len(runs)} runs on {workers} worker(s), {kind} data {data_dir}")
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        seeds = {r.seed: r for r in runs}
        list(pool.map(_pretrain, [c.to_dict() for c in seeds.values()], [str(cache)] * len(seeds)))
        results = []
        futures = [pool.submit(_run, c.to_dict(), str(cache), str(out_dir)) for c in runs]
        for fut in futures:
            res = fut.result()
            results.append(res)
            log(
                f"  {res['strategy']:<12} budget {100 * res['budget_rate']:5.2f}% seed "
                f"{res['seed']}: val {res['val_miou']:5.1f} test {res['test_miou']:5.1f} "
                f"({res['seconds']:.0f} s)"
            )
            report = _report(preset_name, data_dir, base, results, started, len(runs))
            (out_dir / "results.json").write_text(json.dumps(report, indent=1))  # partial
    report = _report(preset_name, data_dir, base, results, started, len(runs))
    write_reports(report, out_dir, data_dir)
    return report


def _report(
    preset: str,
    data_dir: Path,
    base: TrainConfig,
    results: list[dict[str, Any]],
    started: float,
    planned: int,
) -> dict[str, Any]:
    return {
        "preset": preset,
        "data": str(data_dir),
        "base_config": base.to_dict(),
        "planned_runs": planned,
        "results": results,
        "seconds": time.perf_counter() - started,
    }


def summarize(results: list[dict[str, Any]]) -> dict[tuple[str, float], tuple[float, float, int]]:
    """(strategy, budget) -> (mean test mIoU, spread = population std over seeds, n)."""
    groups: dict[tuple[str, float], list[float]] = {}
    for r in results:
        groups.setdefault((r["strategy"], r["budget_rate"]), []).append(r["test_miou"])
    return {k: (statistics.fmean(v), statistics.pstdev(v), len(v)) for k, v in groups.items()}


def table_one(results: list[dict[str, Any]]) -> str:
    """Rows = strategies, columns = budgets (% of target pixels), cells = mean ± std."""
    summary = summarize(results)
    budgets = sorted({r["budget_rate"] for r in results if r["strategy"] not in BUDGET_FREE})
    order = [s for s in STRATEGIES if any(k[0] == s for k in summary)]
    head = "| strategy | " + " | ".join(f"{100 * b:g}%" for b in budgets) + " |"
    lines = [head, "|" + "---|" * (len(budgets) + 1)]
    for s in order:
        cells = []
        for b in budgets:
            key = (s, b) if s not in BUDGET_FREE else next(k for k in summary if k[0] == s)
            m = summary.get(key)
            cells.append(f"{m[0]:.1f} ± {m[1]:.1f}" if m else "-")
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def table_six(results: list[dict[str, Any]], class_names: list[str]) -> str:
    """Per-class test IoU at the largest budget, mean over seeds (Table VI's shape)."""
    top = max((r["budget_rate"] for r in results), default=0.0)
    rows: dict[str, list[list[float | None]]] = {}
    for r in results:
        if r["budget_rate"] == top or r["strategy"] in BUDGET_FREE:
            rows.setdefault(r["strategy"], []).append(r["test_per_class_iou"] + [r["test_miou"]])
    lines = [
        "| strategy | " + " | ".join(class_names) + " | mIoU |",
        "|" + "---|" * (len(class_names) + 2),
    ]
    for s in (s for s in STRATEGIES if s in rows):
        cols = zip(*rows[s], strict=True)
        means = [statistics.fmean([v for v in c if v is not None] or [float("nan")]) for c in cols]
        lines.append(f"| {s} | " + " | ".join(f"{v:.1f}" for v in means) + " |")
    return f"Budget {100 * top:g}% of target pixels.\n\n" + "\n".join(lines)


def write_reports(report: dict[str, Any], out_dir: Path, data_dir: Path) -> None:
    results = report["results"]
    names = [c["name"] for c in json.loads((data_dir / "classes.json").read_text())["classes"]]
    (out_dir / "results.json").write_text(json.dumps(report, indent=1))
    summary = summarize(results)
    gap = _gap(summary)
    md = [
        f"# Benchmark `{report['preset']}`",
        "",
        "Target-test mIoU (%), mean ± std over seeds; model selection on target-val.",
        "",
        table_one(results),
        "",
        f"Supervised minus source-only: {gap:.1f} points." if gap is not None else "",
        "",
        "## Per class (Table VI shape)",
        "",
        table_six(results, names),
        "",
        f"Wall time: {report['seconds'] / 60:.1f} min.",
    ]
    (out_dir / "tables.md").write_text("\n".join(md) + "\n")
    plot(summary, out_dir / "miou_vs_budget.png")


def _gap(summary: dict[tuple[str, float], tuple[float, float, int]]) -> float | None:
    sup = [v[0] for k, v in summary.items() if k[0] == "supervised"]
    src = [v[0] for k, v in summary.items() if k[0] == "source-only"]
    return sup[0] - src[0] if sup and src else None


def plot(summary: dict[tuple[str, float], tuple[float, float, int]], path: Path) -> None:
    """mIoU against the labeled share of target pixels, one line per strategy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for s in STRATEGIES:
        pts = sorted((k[1], v) for k, v in summary.items() if k[0] == s)
        if not pts:
            continue
        if s in BUDGET_FREE:
            ax.axhline(
                pts[0][1][0],
                linestyle="--",
                linewidth=1,
                label=s,
                color="grey" if s == "source-only" else "black",
            )
            continue
        xs = [100 * b for b, _ in pts]
        ax.errorbar(
            xs, [v[0] for _, v in pts], yerr=[v[1] for _, v in pts], marker="o", capsize=3, label=s
        )
    ax.set_xscale("log")
    ax.set_xlabel("labeled target pixels (% of all)")
    ax.set_ylabel("target-test mIoU (%)")
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
