"""Memory and speed of ``adamcu predict`` on a folder of full-size images, on the CPU.

Writes ``--count`` images of ``--height`` x ``--width`` (a few distinct street-like JPEGs,
hard-linked to reach the count: predict decodes each file on its own), a checkpoint of the
small model at that size, then runs ``python -m stack.cli predict`` as a child process and
samples its resident memory (/proc/PID/status VmRSS) every 0.2 s. Prints and writes peak RSS
(target: under 2 GiB), RSS after the first tenth of the images (flat = bounded), images/s.

    python scripts/predict_bench.py --count 1000 --out docs/measurements/predict_bench_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from trainer.config import TrainConfig  # noqa: E402
from trainer.data.synth import CLASSES  # noqa: E402
from trainer.loop import checkpoint  # noqa: E402
from trainer.nets.model import build_model  # noqa: E402

DISTINCT = 8


def write_images(folder: Path, count: int, h: int, w: int) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(min(DISTINCT, count)):
        sky = int(rng.integers(h // 4, h // 2))
        img = np.empty((h, w, 3), np.uint8)
        img[:sky] = (150, 180, 210)
        img[sky:] = (110, 105, 110)
        x = int(rng.integers(0, w - w // 4))
        img[sky : sky + h // 5, x : x + w // 4] = (170, 40, 40)
        noise = rng.normal(0, 8, (h, w, 3))
        Image.fromarray(np.clip(img + noise, 0, 255).astype(np.uint8)).save(
            folder / f"img_{i:05d}.jpg", quality=90
        )
    for i in range(DISTINCT, count):
        os.link(folder / f"img_{i % DISTINCT:05d}.jpg", folder / f"img_{i:05d}.jpg")


def write_checkpoint(path: Path, h: int, w: int) -> None:
    torch.manual_seed(0)
    model = build_model("small", len(CLASSES), embed_dim=32)
    names = [n for n, _ in CLASSES]
    classes = checkpoint.class_table(names, [c for _, c in CLASSES])
    checkpoint.save(path, checkpoint.payload(TrainConfig(), model, classes, (h, w)))


def rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def run_predict(ckpt: Path, images: Path, out: Path, count: int, threads: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(threads)}
    cmd = [sys.executable, "-m", "stack.cli", "predict", "--checkpoint", str(ckpt)]
    cmd += ["--images", str(images), "--out", str(out), "--device", "cpu"]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stderr=subprocess.DEVNULL)
    peak, early = 0.0, None
    while proc.poll() is None:
        rss = rss_mib(proc.pid)
        peak = max(peak, rss or 0.0)
        done = len(os.listdir(out / "overlays")) if (out / "overlays").is_dir() else 0
        if early is None and done >= max(1, count // 10):
            early = peak
        time.sleep(0.2)
    if proc.returncode != 0:
        raise SystemExit(f"predict failed with code {proc.returncode}")
    summary = json.loads((out / "predict.json").read_text())
    return {
        "peak_rss_mib": round(peak, 1),
        "peak_rss_after_first_tenth_mib": round(early or peak, 1),
        "images_per_s": round(summary["images_per_s"], 3),
        "predict_seconds": round(summary["seconds"], 1),
        "wall_seconds": round(time.perf_counter() - started, 1),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--count", type=int, default=1000)
    p.add_argument("--height", type=int, default=512)
    p.add_argument("--width", type=int, default=1024)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="outputs/predict_bench.json")
    a = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="predict_bench_"))
    try:
        write_images(work / "images", a.count, a.height, a.width)
        write_checkpoint(work / "model.pt", a.height, a.width)
        numbers = run_predict(work / "model.pt", work / "images", work / "pred", a.count, a.threads)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report = {
        "images": a.count,
        "size": [a.height, a.width],
        "model": "small",
        "device": "cpu",
        "threads": a.threads,
        **numbers,
        "target_peak_rss_mib": 2048,
        "under_target": numbers["peak_rss_mib"] < 2048,
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
    }
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
