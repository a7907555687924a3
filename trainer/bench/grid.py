"""``adamcu bench``: strategies x budgets x seeds x domain shifts on the bundled benchmark.

Writes ``results.json`` (with each run's label diagnostics), ``tables.md`` (shaped like the
paper's Table I and Table VI, plus the label diagnostics) and the plots
``miou_vs_budget.png`` and ``labels.png`` into the output folder (``trainer.bench.report``).
Model selection uses target-val; the tables report target-test.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from trainer.bench.experiment import run_strategy
from trainer.bench.inputs import USER_DATA, narrow, prepare_data
from trainer.bench.presets import PRESETS, Preset
from trainer.bench.report import write_reports
from trainer.bench.seconds_report import seconds_plot, seconds_table
from trainer.config import TrainConfig
from trainer.data.synth import DEFAULT_SHIFT
from trainer.loop.progress import duration
from trainer.loop.train import load_data, pick_device, pretrain
from trainer.strategies import BUDGET_FREE, configure


def plan(preset: Preset, base: TrainConfig, shift: str = DEFAULT_SHIFT) -> list[TrainConfig]:
    """The grid of runs on one shift; budget-free strategies run once per seed."""
    runs = []
    rows = [(s, preset.budgets) for s in preset.strategies]
    if shift in (preset.shifts[0], USER_DATA):
        rows += [(s, (preset.ablation_budget,)) for s in preset.ablation]
    for seed in preset.seeds:
        for strategy, budgets in rows:
            if preset.seconds:  # timed runs: one per budget in annotator seconds
                for sec in preset.seconds:
                    runs.append(configure(base, strategy, budget_seconds_per_image=sec, seed=seed))
                continue
            for rate in budgets[-1:] if strategy in BUDGET_FREE else budgets:
                runs.append(configure(base, strategy, budget_rate=rate, seed=seed))
    return runs


def _run(cfg_dict: dict[str, Any], cache_dir: str, out_dir: str, shift: str) -> dict[str, Any]:
    cfg = TrainConfig(**cfg_dict)
    budget = f"t{cfg.budget_seconds_per_image:g}" if cfg.budget_seconds_per_image else ""
    name = f"{shift}-{cfg.strategy}-b{cfg.budget_rate:g}{budget}-s{cfg.seed}.pt"
    ckpt = Path(out_dir) / "checkpoints" / name
    res = run_strategy(cfg, load_data(cfg), Path(cache_dir), checkpoint=ckpt)
    return {"shift": shift, **res, "checkpoint": str(ckpt)}


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
    grid: tuple[Any, ...] = (None, None, None),
) -> dict[str, Any]:
    """Use a user's folder as it is, or generate (cached) data per shift under
    ``data_dir/<shift>`` (``inputs.prepare_data``); pre-train once per data set and seed, run
    the grid (narrowed by ``grid`` = strategies, budgets, seeds[, shifts, size]: the arguments
    of ``inputs.narrow``), write the reports. Each run's checkpoint goes to
    ``out_dir/checkpoints/``."""
    preset = narrow(PRESETS[preset_name], *grid)
    started = time.perf_counter()
    cfg0 = base or TrainConfig()
    splits = [cfg0.source_split, cfg0.target_split, cfg0.val_split, cfg0.test_split]
    dirs = prepare_data(data_dir, preset, splits)
    base = cfg0.replace(threads=1 if workers > 1 else 0, **preset.config)
    runs = [
        (shift, cfg)
        for shift, path in dirs.items()
        for cfg in plan(preset, base.replace(data_root=str(path)), shift)
    ]
    cache = out_dir / "cache"
    out_dir.mkdir(parents=True, exist_ok=True)
    log(f"bench {preset_name}: {len(runs)} runs on {workers} worker(s), data {data_dir}")
    results: list[dict[str, Any]] = []
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        first = {(c.data_root, c.seed): c.to_dict() for _, c in runs}
        took = list(pool.map(_pretrain, first.values(), [str(cache)] * len(first)))
        log(f"  pre-training: {len(took)} x, {', '.join(f'{t:.0f}' for t in took)} s")
        futures = [pool.submit(_run, c.to_dict(), str(cache), str(out_dir), s) for s, c in runs]
        for fut in futures:
            res = fut.result()
            results.append(res)
            elapsed = time.perf_counter() - started
            eta = elapsed / len(results) * (len(runs) - len(results))
            log(
                f"  [{len(results)}/{len(runs)} {duration(elapsed)}, eta {duration(eta)}]"
                f" {res['shift']:<9} {res['strategy']:<12} budget {100 * res['budget_rate']:5.2f}%"
                f" seed {res['seed']}: val {res['val_miou']:5.1f} test {res['test_miou']:5.1f}"
                f" ({res['seconds']:.0f} s)"
            )
            report = _report(preset_name, dirs, base, results, started, len(runs), preset.size)
            (out_dir / "results.json").write_text(json.dumps(report, indent=1))  # partial
    report = _report(preset_name, dirs, base, results, started, len(runs), preset.size)
    write_reports(report, out_dir, dirs)
    if preset.seconds:  # pixels vs regions at equal annotator seconds
        table = seconds_table(results, preset.counts["target-train"])
        (out_dir / "seconds.md").write_text(table)
        seconds_plot(results, preset.counts["target-train"], out_dir / "miou_vs_hours.png")
    return report


def _report(
    preset: str,
    dirs: dict[str, Path],
    base: TrainConfig,
    results: list[dict[str, Any]],
    started: float,
    planned: int,
    size: tuple[int, int],
) -> dict[str, Any]:
    return {
        "preset": preset,
        "data": {shift: str(path) for shift, path in dirs.items()},
        "size": list(size),  # (height, width) of generated data; a user's folder: ignored
        "base_config": base.to_dict(),
        "planned_runs": planned,
        "results": results,
        "seconds": time.perf_counter() - started,
    }


def adaptation_iterations(preset: Preset) -> dict[str, int]:
    """Runs and iterations of a preset's grid (for a runtime estimate from a measured s/it):
    ``runs`` (source-only included), ``adapt_iterations``, ``pretrain_iterations``."""
    base = TrainConfig().replace(**preset.config)
    cfgs = [c for shift in preset.shifts for c in plan(preset, base, shift)]
    n = preset.counts["target-train"]
    return {
        "runs": len(cfgs),
        "adapt_iterations": sum(c.adapt_iterations(n) for c in cfgs),
        "pretrain_iterations": base.pretrain_iterations * len(preset.shifts) * len(preset.seeds),
    }
