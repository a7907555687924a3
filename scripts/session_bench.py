"""The human-paced session against benchmark mode, at the same budget and seed.

Benchmark mode: ``run_strategy`` in process (the ground-truth oracle answers each iteration's
queries at once, fixed iteration schedule). Session mode: ``adamcu-worker --mode session``'s
loop (``run_session``) against the in-memory service (``trainer.worker.simulated``) with a
simulated person answering from the same ground truth at ``--rate`` answers/s, with pauses,
skips and one undo, until the session ends by itself (budget answered, target-val plateau).

Prints and writes to ``--out`` (JSON): target-test mIoU of both and their difference, labels,
iterations and seconds, and the time from an answer to its first gradient step (median, p99).

    PYTHONPATH=. python scripts/session_bench.py            # small: ~5 min on 2 CPU cores
    PYTHONPATH=. python scripts/session_bench.py --seeds 0 1 2 --cooldowns 0 100  # ~30 min
    PYTHONPATH=. python scripts/session_bench.py --person-paced --seeds 0 1 2 3 4  # ~25 min

``--person-paced``: a person's pace (one answer every 2 s, ``--rate 0.5 0.5``) over a budget of
about 120 labels (``--budget 0.0006`` of 24 images of 64x128), no benchmark-mode run; per seed
the target-val curve against labels, and whether the session's model improves with them: the
value at the end within 1 point of the best, and above the value at half the labels.

Several seeds give the spread (12 test images: one seed's difference is mostly noise);
several ``--cooldowns`` compare session endings, on target-val.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import threading
import time
from pathlib import Path

import torch

from trainer.bench.experiment import run_strategy
from trainer.config import TrainConfig
from trainer.data.safety import UnsafeFolderError, claim_output_folder
from trainer.data.synth import generate_benchmark
from trainer.loop.train import load_data, pretrain
from trainer.strategies import configure
from trainer.worker.rounds import SessionOptions
from trainer.worker.run import WorkerOptions
from trainer.worker.session_main import FLAGS, run_session
from trainer.worker.simulated import MemoryService, SimulatedPerson

COUNTS = {"source-train": 48, "target-train": 24, "target-val": 12, "target-test": 12}


def session_run(
    cfg: TrainConfig, out: Path, rate: tuple[float, float], pace: dict, with_metrics: bool = False
) -> dict | tuple[dict, list[dict]]:
    svc, stop = MemoryService(lease_s=30), threading.Event()
    person = SimulatedPerson(svc, load_data(cfg).target.labels, rate=rate, pause=(0.03, 2.0))

    def go() -> None:
        while not svc.run:
            time.sleep(0.05)
        person.run(stop)

    threading.Thread(target=go, daemon=True).start()
    shutil.rmtree(out / "session", ignore_errors=True)
    (out / "session" / "cache").mkdir(parents=True)
    for f in (out / "cache").glob("pretrain-*.pt"):  # benchmark mode's pre-trained weights
        shutil.copy(f, out / "session" / "cache" / f.name)
    opts = WorkerOptions("memory", "-", "session", out / "session", session=pace)
    started = time.perf_counter()
    summary = run_session(cfg, opts, client=svc)
    stop.set()
    summary["wall_s"] = round(time.perf_counter() - started, 1)
    if person.last_answer_at is not None:  # to run_session's return (its test evaluation too)
        summary["end_after_last_answer_s"] = round(time.monotonic() - person.last_answer_at, 1)
    summary["person"] = {"answered": len(person.answered), "skipped": person.skipped}
    summary["person"] |= {"undone": person.undone, "refused": person.refused}
    summary["withdrawn_total"] = len(svc.withdrawn)
    return (summary, list(svc.metrics)) if with_metrics else summary


def val_curve(metrics: list[dict]) -> dict:
    """The session's target-val points by labels, and the improvement criteria of issue 25:
    the end within 1 point of the best, and above the value at half the labels."""
    points = [m for m in metrics if m.get("split", "target-val") == "target-val"]
    curve = [(int(m.get("labeled_pixels", 0)), round(float(m["miou"]), 2)) for m in points]
    if not curve:
        return {"curve": []}
    end, best, labels = curve[-1][1], max(v for _, v in curve), curve[-1][0]
    half = [v for n, v in curve if n <= labels // 2][-1]
    return {
        "curve": curve,
        "end": end,
        "best": best,
        "at_half_labels": half,
        "end_within_1_of_best": end >= best - 1.0,
        "end_above_half": end > half,
    }


def full_config(a: argparse.Namespace, seed: int, work: Path, **more: object) -> TrainConfig:
    """ADA-MCU (``full``) on the bench's data at its budget and seed, on the CPU."""
    common = {"budget_rate": a.budget, "pretrain_iterations": a.pretrain_iterations}
    data_root = str(work.parent / "data")
    return configure(
        TrainConfig(), "full", data_root=data_root, seed=seed, device="cpu", **common, **more
    )


def person_paced(a: argparse.Namespace, seed: int, work: Path) -> dict:
    """One session at a person's pace, no benchmark-mode run: its target-val curve."""
    cfg = full_config(a, seed, work)
    pretrain(cfg, load_data(cfg), torch.device("cpu"), work / "cache", progress=False)
    pace = {"queue_minutes": 0.5, "queue_floor": 10, "queue_ceiling": 60, "eval_seconds": 10}
    pace |= {"plateau_minutes": 0.5, "stale_minutes": 1.0, "rescore_seconds": 15}
    pace |= {"cooldown_iterations": a.cooldowns[0]}
    for key in PACE_ARGS:
        if getattr(a, key) is not None:
            pace[key] = getattr(a, key)
    session, metrics = session_run(cfg, work, tuple(a.rate), pace, with_metrics=True)
    row = {k: session.get(k) for k in SESSION_KEYS} | val_curve(metrics)
    row |= {"seed": seed, "test_miou_before": session["test_miou_before"]}
    print(json.dumps({k: v for k, v in row.items() if k != "curve"}), flush=True)
    return row


def one_seed(a: argparse.Namespace, seed: int, work: Path) -> dict:
    """Benchmark mode once, then a session per cooldown length, at this seed."""
    eval_every = max(1, a.iterations // 5) if a.iterations else 0
    cfg = full_config(a, seed, work, iterations=a.iterations, eval_every=eval_every)
    started = time.perf_counter()
    bench = run_strategy(cfg, load_data(cfg), work / "cache")
    bench["wall_s"] = round(time.perf_counter() - started, 1)
    out = {"seed": seed, "benchmark": {k: bench[k] for k in BENCH_KEYS}, "sessions": {}}
    for cooldown in a.cooldowns:
        pace = {"queue_minutes": 0.5, "queue_floor": 10, "queue_ceiling": 60, "eval_seconds": 10}
        pace |= {"plateau_minutes": 0.5, "stale_minutes": 1.0, "rescore_seconds": 15}
        pace |= {"cooldown_iterations": cooldown}
        session = session_run(cfg, work, tuple(a.rate), pace)
        row = {k: session.get(k) for k in SESSION_KEYS}
        row["miou_difference"] = round(session["test_miou_after"] - bench["test_miou"], 2)
        row["answer_to_gradient_s"] = session["latency"]
        out["sessions"][str(cooldown)] = row
        print(json.dumps({"seed": seed, "cooldown": cooldown, **row}), flush=True)
    return out


BENCH_KEYS = ("val_miou", "test_miou", "labeled_pixels", "wall_s")
SESSION_KEYS = ("best_val_miou", "test_miou_after", "labeled_pixels", "iterations", "wall_s")
SESSION_KEYS += ("ended", "withdrawn_total", "rounds", "max_pending", "person")
SESSION_KEYS += ("end_after_last_answer_s",)
PACE_FLAGS = ("--weight-average", "--plateau-gain", "--weight-average-warmup")  # if given
PACE_ARGS = tuple(FLAGS[flag][0] for flag in PACE_FLAGS)  # their SessionOptions fields


def summarize(runs: list[dict], cooldowns: list[int]) -> dict:
    """Mean and spread over the seeds, per cooldown: the difference to benchmark mode on
    target-val (what a choice may be made on) and on target-test (reported)."""

    def stats(xs: list[float]) -> dict:
        mean = statistics.fmean(xs)
        sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
        return {"mean": round(mean, 2), "sd": round(sd, 2), "values": [round(x, 2) for x in xs]}

    out = {"benchmark_test": stats([r["benchmark"]["test_miou"] for r in runs])}
    out["benchmark_val"] = stats([r["benchmark"]["val_miou"] for r in runs])
    for c in map(str, cooldowns):
        rows = [(r["benchmark"], r["sessions"][c]) for r in runs]
        out[f"cooldown_{c}"] = {
            "val_difference": stats([s["best_val_miou"] - b["val_miou"] for b, s in rows]),
            "test_difference": stats([s["test_miou_after"] - b["test_miou"] for b, s in rows]),
            "median_latency_s": [s["answer_to_gradient_s"]["median_s"] for _, s in rows],
            "p99_latency_s": [s["answer_to_gradient_s"]["p99_s"] for _, s in rows],
        }
    return out


def add_pace_args(p: argparse.ArgumentParser) -> None:
    """The session flags a person-paced run may set, as the worker takes them (default:
    SessionOptions' own)."""
    for flag in PACE_FLAGS:
        _, kind, text = FLAGS[flag]
        p.add_argument(flag, type=kind, default=None, help=text)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--budget", type=float, default=0.0005)
    p.add_argument(
        "--iterations",
        type=int,
        default=0,
        help="benchmark mode's schedule: 0 the default passes (16), > 0 exactly this many",
    )
    p.add_argument("--pretrain-iterations", type=int, default=150)
    p.add_argument("--rate", type=float, nargs=2, default=(3.0, 6.0), help="answers/s range")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument(
        "--cooldowns",
        type=int,
        nargs="+",
        default=[SessionOptions().cooldown_iterations],
        help="session cooldown lengths to run (iterations; 0: end at the plateau)",
    )
    p.add_argument(
        "--person-paced",
        action="store_true",
        help="one answer every 2 s over ~120 labels, sessions only: does the model improve?",
    )
    p.add_argument("--threads", type=int, default=2, help="torch threads (2: both cores)")
    add_pace_args(p)
    p.add_argument("--work", default="outputs/session_bench")
    p.add_argument("--out", default="outputs/session_bench.json")
    a = p.parse_args()
    if a.person_paced and a.rate == p.get_default("rate"):
        a.rate = [0.5, 0.5]
    if a.person_paced and a.budget == p.get_default("budget"):
        a.budget = 0.0006
    torch.set_num_threads(a.threads)
    work = Path(a.work)
    try:  # it clears session/
        claim_output_folder(work, ".session-bench", "scripts/session_bench.py", "--work")
    except UnsafeFolderError as exc:
        sys.exit(f"session_bench.py: {exc}")
    generate_benchmark(work / "data", counts=COUNTS, seed=1234)
    if a.person_paced:
        return person_paced_report(a, work)
    runs = [one_seed(a, seed, work / f"seed-{seed}") for seed in a.seeds]
    report = {
        "config": {"budget_rate": a.budget, "counts": COUNTS, "rate": a.rate},
        "config_more": {"seeds": a.seeds, "cooldowns": a.cooldowns, "iterations": a.iterations},
        "summary": summarize(runs, a.cooldowns),
        "runs": runs,
    }
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(report, indent=1))
    print(json.dumps(report["summary"], indent=1))


def person_paced_report(a: argparse.Namespace, work: Path) -> None:
    rows = [person_paced(a, seed, work / f"seed-{seed}") for seed in a.seeds]
    summary = {
        "end_within_1_of_best": sum(r.get("end_within_1_of_best", False) for r in rows),
        "end_above_half": sum(r.get("end_above_half", False) for r in rows),
        "seeds": len(rows),
        "test_after": [round(r["test_miou_after"], 2) for r in rows],
        "test_after_mean": round(statistics.fmean(r["test_miou_after"] for r in rows), 2),
        "end_after_last_answer_s": [r.get("end_after_last_answer_s") for r in rows],
    }
    report = {"config": {"budget_rate": a.budget, "counts": COUNTS, "rate": a.rate}}
    given = {k: getattr(a, k) for k in PACE_ARGS}
    chosen = SessionOptions(**{k: v for k, v in given.items() if v is not None})
    report |= {"person_paced": True, "threads": a.threads}
    report |= {k: getattr(chosen, k) for k in PACE_ARGS}
    report |= {"summary": summary, "runs": rows}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(report, indent=1))
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
