"""GPU benchmark at the paper's scale, without a dataset.

    python -m trainer.bench.gpu --out outputs/gpu_bench.json        (adamcu gpu-bench)

Random images and blocky random labels, 2 source + 2 target crops of 512x1024, DeepLab v2
(ResNet-101, 19 classes): seconds per iteration (median) of a plain CE step and of the full
ADA-MCU step, their ratio, the share of each part of the ADA-MCU step (scoring, selection with
the oracle, segmentation losses, MCU + DCCM, backward), the peak allocated and reserved GPU
memory of one step of each (peaks reset before it) and the host syncs per ADA-MCU step
(``torch.cuda.set_sync_debug_mode``; ``trainer.bench.speed.measure``), for each setting: fp32,
bf16 autocast, each with and without channels_last (``--compile``: torch.compile the step's
pure kernels). An out-of-memory or other CUDA error is
recorded for its setting and the next one runs; the JSON is rewritten after every setting and
every line is flushed, so a run cut short still leaves its numbers. ``--max-seconds`` skips
the settings that would start after that time (the first always runs). On the CPU it runs
at a tiny size, e.g. ``--device cpu --height 32 --width 64 --model small --iterations 2``.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

from trainer.bench.gpu_args import SETTINGS, StepShape, add_arguments
from trainer.bench.speed import measure
from trainer.config import TrainConfig
from trainer.loop.train import pick_device
from trainer.strategies import configure


def _environment(device: torch.device) -> dict[str, Any]:
    env: dict[str, Any] = {
        "torch": torch.__version__,
        "device": str(device),
        "threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env.update(
            gpu=props.name,
            gpu_memory_mib=props.total_memory // 2**20,
            cuda=torch.version.cuda,
            cudnn=torch.backends.cudnn.version(),
            cudnn_benchmark=torch.backends.cudnn.benchmark,
            cudnn_allow_tf32=torch.backends.cudnn.allow_tf32,
            matmul_allow_tf32=torch.backends.cuda.matmul.allow_tf32,
        )
    return env


def _clear(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def run_setting(
    name: str,
    base: TrainConfig,
    height: int,
    width: int,
    classes: int,
    iterations: int,
    warmup: int,
) -> dict[str, Any]:
    """One setting: ``measure``'s numbers, or the error that stopped it."""
    amp, channels_last = SETTINGS[name]
    cfg = base.replace(amp=amp, channels_last=channels_last)
    device = pick_device(cfg.device)
    _clear(device)
    started = time.perf_counter()
    try:
        result = measure(cfg, height, width, classes, iterations, warmup)
    except (torch.cuda.OutOfMemoryError, RuntimeError) as exc:  # recorded, the next one runs
        result = {"error": f"{type(exc).__name__}: {str(exc)[:400]}"}
    _clear(device)
    keep = (
        "ce_seconds",
        "full_seconds",
        "ratio",
        "parts",
        "ce_peak_mib",
        "full_peak_mib",
        "ce_reserved_mib",
        "full_reserved_mib",
        "syncs_per_step",
        "syncs_per_quiet_step",
        "share",
        "scoring_selection_share",
        "contrast_share",
        "compile",
        "amp",
        "error",
    )
    out = {
        "setting": name,
        "bf16": amp,
        "channels_last": channels_last,
        **{k: result[k] for k in keep if k in result},
    }
    out["seconds"] = time.perf_counter() - started
    return out


_PARTS = ("scoring", "selection", "seg_losses", "mcu", "backward")


def _row(r: dict[str, Any]) -> str:
    if "error" in r or "skipped" in r:
        return f"{r['setting']:<20} {r.get('error') or r.get('skipped')}"
    mib = ("ce_peak_mib", "full_peak_mib", "ce_reserved_mib", "full_reserved_mib")
    peak = " ".join(f"{r[k]:>8.0f}" if r.get(k) is not None else f"{'-':>8}" for k in mib)
    parts = " ".join(f"{100 * r['parts'][k]:>5.1f}" for k in _PARTS)
    syncs = f"{r['syncs_per_step']:>3}/{r['syncs_per_quiet_step']:<3}"
    return (
        f"{r['setting']:<20} {r['ce_seconds']:>8.3f} {r['full_seconds']:>8.3f} "
        f"{r['ratio']:>6.2f} {parts} {peak} {syncs}"
    )


def _print_header(report: dict[str, Any], dev: torch.device) -> None:
    print(
        f"{report['model']} {report['height']}x{report['width']}, {report['batch']}, "
        f"{report['classes']} classes on {report.get('gpu', dev)}; median s/iteration over "
        f"{report['iterations']} (+{report['warmup']} warmup); parts in % of the ADA-MCU step; "
        "MiB peak allocated / reserved; host syncs per ADA-MCU step querying / after the window",
        flush=True,
    )
    parts = " ".join(f"{k[:5]:>5}" for k in _PARTS)
    print(
        f"{'setting':<20} {'CE s':>8} {'full s':>8} {'ratio':>6} {parts} {'CE all':>8} "
        f"{'full all':>8} {'CE res':>8} {'full res':>8} syncs",
        flush=True,
    )


def run_gpu_bench(
    out: Path,
    machine: TrainConfig,
    shape: StepShape = StepShape(512, 1024, 19),
    *,
    iterations: int = 10,
    warmup: int = 3,
    settings: list[str] | None = None,
    max_seconds: float = 270.0,
) -> dict[str, Any]:
    """Run every setting, print a table, write ``out`` (JSON) after each setting.
    ``machine``: the network and the machine's fields (``model``, ``device``, ``threads``,
    ``compile_step``)."""
    model, device, compile_step = machine.model, machine.device, machine.compile_step
    height, width, classes = shape
    names = settings or list(SETTINGS)
    unknown = sorted(set(names) - set(SETTINGS))
    if unknown:
        raise ValueError(f"unknown settings {unknown}; choose from {sorted(SETTINGS)}")
    dev = pick_device(device)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input size
    base = configure(machine.replace(device=str(dev), embed_dim=64), "full", budget_rate=0.05)
    report: dict[str, Any] = {
        "model": model,
        "height": height,
        "width": width,
        "classes": classes,
        "batch": f"{base.batch_source} source + {base.batch_target} target",
        "compile": compile_step,
        "iterations": iterations,
        "warmup": warmup,
        **_environment(dev),
        "results": [],
    }
    _print_header(report, dev)
    started = time.perf_counter()
    out.parent.mkdir(parents=True, exist_ok=True)
    for name in names:
        if report["results"] and time.perf_counter() - started > max_seconds:
            row = {"setting": name, "skipped": f"time budget of {max_seconds:.0f} s spent"}
        else:
            row = run_setting(name, base, height, width, classes, iterations, warmup)
        report["results"].append(row)
        report["seconds"] = time.perf_counter() - started
        out.write_text(json.dumps(report, indent=1))
        print(_row(row), flush=True)
    print(f"written to {out} ({report['seconds']:.0f} s)", flush=True)
    return report


def run_from_args(args: argparse.Namespace) -> int:
    machine = TrainConfig(
        model=args.model, device=args.device, threads=args.threads, compile_step=args.compile
    )
    run_gpu_bench(
        Path(args.out),
        machine,
        StepShape(args.height, args.width, args.classes),
        iterations=args.iterations,
        warmup=args.warmup,
        settings=[s for s in args.settings.split(",") if s],
        max_seconds=args.max_seconds,
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m trainer.bench.gpu",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(p)
    return run_from_args(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
