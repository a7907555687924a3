"""Peak RSS of the session worker over 300 target images of 2048x1024 (issue 16).

Generates the bundled benchmark at 2048x1024 (``--images`` target-train images, written
without labels as a labeling session's target is; a few source, val and test images with
labels; kept under ``--work``/data for the next run), then runs ``adamcu-worker --mode session``'s
loop (``run_session``) in a child process against the in-memory service
(``trainer.worker.simulated``) with a simulated person answering at once. An admin finishes
the run after ``--iterations`` training steps; the worker then evaluates its best weights on
target-test and ends as it always does. The child reports its peak RSS (``VmHWM``), its RSS
after the imports and after the data are loaded, and the split bytes it holds; the parent
prints them and writes JSON to ``--out``.

The person answers from a fixed pattern, not from ground truth: the oracle's labels are not
the worker's memory. On a CPU the steps run at full resolution (no crop), so the peak holds
a step's activations at 2048x1024 too; ``--crop H W`` resizes every split at load.

    PYTHONPATH=$PWD .venv/bin/python scripts/worker_rss_bench.py
    PYTHONPATH=$PWD .venv/bin/python scripts/worker_rss_bench.py --images 30 --work /tmp/wr
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MB = 2**20

CHILD = r"""
import json, sys, threading, time
from pathlib import Path

def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024

imports_rss = status("VmRSS")
import torch
from trainer.config import TrainConfig
from trainer.strategies import configure
from trainer.loop import train as train_mod
from trainer.worker.run import WorkerOptions
from trainer.worker.session_main import run_session
from trainer.worker.simulated import MemoryService, SimulatedPerson

args = json.loads(sys.argv[1])
torch.set_num_threads(args["threads"])
imports_rss = status("VmRSS")
cfg = configure(TrainConfig(), "full", **args["cfg"])
loaded = {}
load_data = train_mod.load_data

def counting_load(*a, **k):
    data = load_data(*a, **k)
    splits = {"source": data.source, "target": data.target, "val": data.val, "test": data.test}
    loaded["split_bytes"] = {
        name: s.images.untyped_storage().nbytes() + s.labels.untyped_storage().nbytes()
        for name, s in splits.items()
    }
    loaded["rss_after_load"] = status("VmRSS")
    return data

import trainer.worker.session_main as session_main
session_main.load_data = counting_load

class Pattern:  # the person's answers: a fixed class pattern, no ground truth held
    def __getitem__(self, key):
        _, y, x = key
        return (7 * int(y) + int(x)) % args["classes"]

svc, stop = MemoryService(lease_s=60), threading.Event()
person = SimulatedPerson(svc, Pattern(), rate=(50, 100), pause=(0.0, 0.01))
steps = {"n": 0}
from trainer.worker import session as session_mod
from trainer.worker.queue_keeper import QueueKeeper
step = session_mod.Session.train_step

def counted(self):
    step(self)
    steps["n"] += 1
    print(f"step {steps['n']} rss {status('VmRSS') / 2**20:.0f} MiB", file=sys.stderr, flush=True)
    if steps["n"] == args["iterations"]:
        svc.finish_run(self.run_id)  # the admin ends it; the worker notices and finishes

session_mod.Session.train_step = counted
rises = {}  # phase -> MiB the peak (VmHWM, which only grows) rose by during its calls


def watch(owner, name, label):
    inner = getattr(owner, name)

    def watched(*a, **k):
        before = status("VmHWM")
        try:
            return inner(*a, **k)
        finally:
            rise = status("VmHWM") - before
            if rise:
                rises[label] = rises.get(label, 0) + rise

    setattr(owner, name, watched)


watch(session_main, "load_data", "load the data")
watch(session_main, "pretrain", "pre-train (source batches)")
watch(session_main, "evaluate", "evaluate target-test")
watch(session_mod.Session, "train_step", "training steps")
watch(QueueKeeper, "post_round", "score images for a round (Eq. 1)")
watch(session_mod.Session, "evaluate", "evaluate target-val")
watch(session_mod.Session, "save", "checkpoints")

def go():
    while not svc.run:
        time.sleep(0.05)
    person.run(stop)

threading.Thread(target=go, daemon=True).start()
out = Path(args["work"])
opts = WorkerOptions("memory", "-", "session", out, new_run=True, session=args["pace"])
started = time.perf_counter()
summary = run_session(cfg, opts, client=svc)
stop.set()
print(json.dumps({
    "peak_rss": status("VmHWM"),
    "rss_after_imports": imports_rss,
    "rss_after_load": loaded["rss_after_load"],
    "peak_rises": rises,
    "split_bytes": loaded["split_bytes"],
    "seconds": round(time.perf_counter() - started, 1),
    "iterations": summary["iterations"],
    "ended": summary["ended"],
    "labeled_pixels": summary["labeled_pixels"],
    "rounds": summary["rounds"],
}))
"""


def prepare(work: Path, a: argparse.Namespace) -> Path:
    """Claim ``work`` (refusing a folder the bench did not make) and generate the data in it
    (cached), target-train without labels; returns the data folder."""
    sys.path.insert(0, str(ROOT))
    from trainer.data.safety import UnsafeFolderError, claim_output_folder
    from trainer.data.synth import generate_benchmark

    try:
        claim_output_folder(work, ".worker-rss-bench", "scripts/worker_rss_bench.py", "--work")
    except UnsafeFolderError as exc:
        sys.exit(f"worker_rss_bench.py: {exc}")
    data = work / "data"
    counts = {"source-train": 8, "target-train": a.images, "target-val": 4, "target-test": 4}
    generate_benchmark(data, height=a.height, width=a.width, counts=counts, seed=1234, workers=2)
    labels = data / "target-train" / "labels"
    if labels.is_dir():  # people label target-train: the session's target comes without labels
        shutil.rmtree(labels)
    return data


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=300, help="target-train images")
    p.add_argument("--height", type=int, default=1024)
    p.add_argument("--width", type=int, default=2048)
    p.add_argument("--iterations", type=int, default=4, help="training steps before the end")
    p.add_argument("--crop", type=int, nargs=2, help="resize every split to H W at load")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--work", default=str(ROOT / "outputs" / "worker_rss"), help="data and worker go here"
    )
    p.add_argument("--out", default=str(ROOT / "outputs" / "worker_rss_bench.json"))
    a = p.parse_args()
    work = Path(a.work)
    started = time.perf_counter()
    data = prepare(work, a)
    generated_s = round(time.perf_counter() - started, 1)
    pace = {"queue_floor": 20, "queue_ceiling": 40, "round_images": 2, "eval_seconds": 3600}
    pace |= {"status_seconds": 1.0, "rescore_seconds": 3600, "checkpoint_seconds": 3600}
    cfg = {"data_root": str(data), "pretrain_iterations": 2, "budget_rate": 1e-6, "seed": 0}
    cfg |= {"device": "cpu", "crop": a.crop}
    args = {"cfg": cfg, "pace": pace, "work": str(work / "worker"), "iterations": a.iterations}
    args["threads"] = a.threads
    args["classes"] = len(json.loads((data / "classes.json").read_text())["classes"])
    child = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(args)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=False,
    )
    if child.returncode != 0:
        sys.exit(f"the worker failed:\n{child.stderr[-4000:]}")
    got = json.loads(child.stdout.strip().splitlines()[-1])
    report = {
        "config": {"target_images": a.images, "size": [a.height, a.width], "crop": a.crop},
        "generate_seconds": generated_s,
        "peak_rss_mib": round(got["peak_rss"] / MB, 1),
        "rss_after_imports_mib": round(got["rss_after_imports"] / MB, 1),
        "rss_after_load_mib": round(got["rss_after_load"] / MB, 1),
        "split_mib": {k: round(v / MB, 1) for k, v in got["split_bytes"].items()},
        "peak_rise_mib_by_phase": {k: round(v / MB, 1) for k, v in got["peak_rises"].items()},
        "steps_rss": [line for line in child.stderr.splitlines() if line.startswith("step ")],
    }
    report |= {k: got[k] for k in ("seconds", "iterations", "ended", "labeled_pixels", "rounds")}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
