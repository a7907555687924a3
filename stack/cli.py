"""``adamcu``: the command line. Each subcommand builds its config at the edge and logs it."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from client.logs import setup_logging
from server.resources import package_version
from trainer.bench.gpu_args import add_arguments as add_gpu_bench_arguments
from trainer.config import TrainConfig, load_config


def _generate(args: argparse.Namespace) -> int:
    from trainer.data.synth import DEFAULT_COUNTS, generate_benchmark

    counts = dict(DEFAULT_COUNTS)
    for item in args.count or []:
        split, _, n = item.partition("=")
        if split not in counts or not n.isdigit():
            sys.exit(f"--count wants SPLIT=N with SPLIT in {sorted(counts)}, got {item!r}")
        counts[split] = int(n)
    root = generate_benchmark(
        Path(args.out),
        height=args.height,
        width=args.width,
        counts=counts,
        seed=args.seed,
        shift=args.shift,
    )
    print(f"benchmark ready in {root}")
    return 0


def _bench(args: argparse.Namespace) -> int:
    from trainer.bench.grid import run_bench
    from trainer.bench.inputs import parse_grid, parse_size, split_list
    from trainer.bench.presets import PRESETS

    if args.preset not in PRESETS:
        sys.exit(f"unknown preset {args.preset!r}; choose from {sorted(PRESETS)}")
    out = Path(args.out or f"outputs/bench-{args.preset}")
    data = Path(args.data or f"data/bench-{args.preset}")
    try:
        grid = (
            *parse_grid(args.strategies, args.budgets, args.seeds),
            split_list(args.shifts),
            parse_size(args.size),
        )
    except ValueError as err:
        sys.exit(str(err))
    report = run_bench(args.preset, out, data, workers=args.workers, grid=grid)
    print((out / "tables.md").read_text())
    print(
        f"results: {out / 'results.json'}\nplot: {out / 'miou_vs_budget.png'}\n"
        f"took {report['seconds'] / 60:.1f} min"
    )
    return 0


def _validate(args: argparse.Namespace) -> int:
    from trainer.data.validate import validate_folder

    unlabeled = tuple(args.unlabeled or ())
    summary = validate_folder(Path(args.data), unlabeled=unlabeled)
    for name, split in summary["splits"].items():
        kind = "labeled" if split["labeled"] else "unlabeled"
        print(f"{name}: {split['images']} images, {kind}, sizes {', '.join(split['sizes'])}")
    print(f"{args.data}: valid ({len(summary['classes'])} classes)")
    return 0


def _predict(args: argparse.Namespace) -> int:
    from trainer.loop.predict import predict_folder

    s = predict_folder(
        Path(args.checkpoint),
        Path(args.images),
        Path(args.out),
        device=args.device,
        amp=not args.no_amp,
    )
    print(
        f"{s['images']} images segmented on {s['device']} ({s['images_per_s']:.2f} images/s): "
        f"labels in {Path(args.out) / 'labels'}, overlays in {Path(args.out) / 'overlays'}"
    )
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from trainer.loop.predict import evaluate_folder, format_table

    result = evaluate_folder(
        Path(args.checkpoint),
        Path(args.data),
        args.split,
        device=args.device,
        amp=not args.no_amp,
    )
    print(format_table(result))
    out = Path(args.out or f"outputs/evaluate-{args.split}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"{args.split}: mIoU {result['miou']:.1f} -> {out}")
    return 0


def _speed(args: argparse.Namespace) -> int:
    from trainer.bench.gpu_args import StepShape
    from trainer.bench.speed import run_speed
    from trainer.config import TrainConfig

    machine = {"device": args.device, "compile_step": args.compile, "threads": args.threads}
    base = TrainConfig(model=args.model, amp=not args.no_amp, **machine)
    shape = StepShape(args.height, args.width, args.classes)
    run_speed(Path(args.out), base, shape, args.iterations)
    print(f"written to {args.out}")
    return 0


def _gpu_bench(args: argparse.Namespace) -> int:
    from trainer.bench.gpu import run_from_args

    return run_from_args(args)


def _train(args: argparse.Namespace) -> int:
    from trainer.bench.experiment import run_strategy
    from trainer.loop.train import load_data
    from trainer.strategies import configure

    base = load_config(args.config) if args.config else TrainConfig()
    changes = {"budget_rate": args.budget} if args.budget is not None else {}
    if args.data:
        changes["data_root"] = args.data
    cfg = configure(base, args.strategy or base.strategy, **changes)
    logging.getLogger("adamcu").info("config %s", json.dumps(cfg.to_dict()))
    out = Path(args.out)
    result = run_strategy(
        cfg, load_data(cfg), Path(args.cache), progress=True, checkpoint=out.with_suffix(".pt")
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(
        f"{cfg.strategy}: target-val mIoU {result['val_miou']:.1f}, target-test mIoU "
        f"{result['test_miou']:.1f}, labeled {result['labeled_pixels']} pixels -> {out}, "
        f"checkpoint {out.with_suffix('.pt')}"
    )
    return 0


# the names of trainer.bench.presets.PRESETS (not imported here: it loads numpy and the scene
# generator for every command); tests/deploy/test_cli_help.py keeps the two equal
PRESET_HELP = "smoke | quick | standard | seconds | ladder | paper"


def _add_bench(sub: argparse._SubParsersAction) -> None:
    b = sub.add_parser("bench", help="strategies x budgets x seeds, tables and a plot")
    b.add_argument("--preset", default="quick", help=PRESET_HELP)
    b.add_argument("--out")
    b.add_argument("--data", help="your labeled folder (used as it is) or where to generate")
    b.add_argument("--strategies", help="comma list narrowing the preset's, e.g. random,full")
    b.add_argument("--budgets", help="comma list of target-pixel shares, e.g. 0.001,0.017")
    b.add_argument("--seeds", help="comma list, e.g. 0,1")
    b.add_argument("--shifts", help="comma list narrowing the preset's, e.g. moderate")
    b.add_argument("--size", help="generated images' HEIGHTxWIDTH, e.g. 256x512 (64x128)")
    b.add_argument("--workers", type=int, default=2)
    b.set_defaults(fn=_bench)


def _add_data_commands(sub: argparse._SubParsersAction) -> None:
    """validate, predict and evaluate: the commands of "your data in, your model out"."""
    v = sub.add_parser("validate", help="check a dataset folder against the format (docs/data.md)")
    v.add_argument("--data", required=True)
    v.add_argument(
        "--unlabeled", action="append", help="SPLIT that may come without labels/ (repeatable)"
    )
    v.set_defaults(fn=_validate)
    pr = sub.add_parser("predict", help="segment a folder of images with a checkpoint")
    pr.add_argument("--checkpoint", required=True)
    pr.add_argument("--images", required=True, help="a folder of images (any PIL format)")
    pr.add_argument("--out", required=True, help="new folder: labels/ (class ids), overlays/")
    ev = sub.add_parser("evaluate", help="mIoU and per-class IoU of a checkpoint on a split")
    ev.add_argument("--checkpoint", required=True)
    ev.add_argument("--data", required=True)
    ev.add_argument("--split", default="target-test")
    ev.add_argument("--out", help="JSON file (default outputs/evaluate-SPLIT.json)")
    for cmd in (pr, ev):
        cmd.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
        cmd.add_argument("--no-amp", action="store_true", help="no bf16 autocast on a GPU")
    pr.set_defaults(fn=_predict)
    ev.set_defaults(fn=_evaluate)


def _add_speed_benchmarks(sub: argparse._SubParsersAction) -> None:
    """``adamcu speed`` (CPU or GPU) and ``adamcu gpu-bench`` (paper scale)."""
    s = sub.add_parser("speed", help="seconds per ADA-MCU step against a plain CE step")
    s.add_argument("--out", default="outputs/speed.json")
    s.add_argument("--model", default="small")
    s.add_argument("--height", type=int, default=64)
    s.add_argument("--width", type=int, default=128)
    s.add_argument("--classes", type=int, default=9)
    s.add_argument("--iterations", type=int, default=30)
    s.add_argument("--device", default="auto")
    s.add_argument("--no-amp", action="store_true")
    s.add_argument("--compile", action="store_true", help="torch.compile the step's pure kernels")
    s.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    s.set_defaults(fn=_speed)
    gb = sub.add_parser(
        "gpu-bench",
        help="paper-scale GPU benchmark: s/iteration and peak "
        "memory of the CE and ADA-MCU steps, fp32/bf16, channels_last",
    )
    add_gpu_bench_arguments(gb)
    gb.set_defaults(fn=_gpu_bench)


def _dry_run(args: argparse.Namespace) -> int:
    from trainer.bench.dryrun_report import dry_run

    report = dry_run(args)
    return 0 if report["all_spent"] else 1


def _add_dry_run(sub: argparse._SubParsersAction) -> None:
    from trainer.bench.dryrun_args import add_arguments

    d = sub.add_parser(
        "dry-run",
        help="paper-scale dry run: every strategy's selection, budget, label bank and MCU sets "
        "over the whole schedule at 512x1024, no network",
    )
    add_arguments(d)
    d.set_defaults(fn=_dry_run)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="adamcu", description=__doc__)
    p.add_argument("--version", action="version", version=f"adamcu {package_version()}")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser(
        "loop",
        help="server + worker + simulated oracles on this machine (adamcu loop --help)",
        add_help=False,
    )
    g = sub.add_parser("generate", help="write the bundled synthetic-to-real benchmark")
    g.add_argument("--out", default="data/bundled")
    g.add_argument("--height", type=int, default=64)
    g.add_argument("--width", type=int, default=128)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--count", action="append", help="SPLIT=N, e.g. target-train=200")
    g.add_argument(
        "--shift",
        default="moderate",
        help="target look: moderate (sim-to-real, classes keep their colours; default) or "
        "hard (colours swap classes)",
    )
    g.set_defaults(fn=_generate)
    _add_bench(sub)
    _add_dry_run(sub)
    _add_data_commands(sub)
    _add_speed_benchmarks(sub)
    t = sub.add_parser("train", help="one strategy in process, with the ground-truth oracle")
    t.add_argument("--config", help="a TOML/JSON file of TrainConfig fields")
    t.add_argument("--strategy")
    t.add_argument("--budget", type=float, help="share of target pixels, e.g. 0.017")
    t.add_argument("--data")
    t.add_argument("--cache", default="outputs/cache")
    t.add_argument("--out", default="outputs/train.json")
    t.set_defaults(fn=_train)
    return p


def main(argv: list[str] | None = None) -> int:
    setup_logging()  # $ADAMCU_LOG_LEVEL; `adamcu loop --verbose` for DEBUG
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["loop"]:
        from stack.loop import main as loop_main

        return loop_main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except (FileNotFoundError, ValueError) as exc:
        print(f"adamcu {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
