"""Source-only against supervised on target-val, for one shift of the bundled benchmark.

The domain gap of a shift is read as the ratio source-only / supervised target-val mIoU,
both with the `quick` preset's schedule (800 pre-training and 250 adaptation iterations).
Target-test is neither printed nor written (it is generated with a token size because the
loader wants the split). The knobs (--colour, --texture, --noise, --blur; defaults: the
shipped ``MODERATE_STRENGTHS``) rebuild the ``moderate`` shift at other strengths, to tune it
on target-val:

    .venv/bin/python scripts/shift_gap.py --shift moderate --out outputs/shift-gap
    .venv/bin/python scripts/shift_gap.py --shift hard --out outputs/shift-gap
    .venv/bin/python scripts/shift_gap.py --colour 1.5 --noise 1.5 --out outputs/shift-gap
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from trainer.bench.experiment import run_strategy  # noqa: E402
from trainer.bench.presets import PRESETS  # noqa: E402
from trainer.config import TrainConfig  # noqa: E402
from trainer.data import synth_shift  # noqa: E402
from trainer.data.synth import generate_benchmark  # noqa: E402
from trainer.loop.train import load_data  # noqa: E402
from trainer.strategies import configure  # noqa: E402

KNOBS = ("colour", "texture", "noise", "blur")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shift", default="moderate")
    p.add_argument("--out", default="outputs/shift-gap")
    p.add_argument("--counts", default="200,120,40", help="source-train,target-train,target-val")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    for knob in KNOBS:
        p.add_argument(f"--{knob}", type=float, default=synth_shift.MODERATE_STRENGTHS[knob])
    args = p.parse_args()
    knobs = {k: getattr(args, k) for k in KNOBS}
    tag = args.shift
    if knobs != synth_shift.MODERATE_STRENGTHS:
        if args.shift != "moderate":
            sys.exit("--colour/--texture/--noise/--blur tune the moderate shift only")
        # in-process only (workers=1 below); the tag keeps data and cache apart per setting
        synth_shift.SHIFTS["moderate"] = synth_shift.camera_shift(**knobs)
        tag += "-" + "-".join(f"{k}{v:g}" for k, v in knobs.items())
    n_src, n_trg, n_val = (int(v) for v in args.counts.split(","))
    counts = {"source-train": n_src, "target-train": n_trg, "target-val": n_val, "target-test": 4}
    out = Path(args.out) / f"{tag}-{args.counts.replace(',', '-')}"
    started = time.perf_counter()
    generate_benchmark(out / "data", counts=counts, seed=1234, shift=args.shift)
    base = TrainConfig().replace(
        data_root=str(out / "data"), threads=args.threads, **PRESETS["quick"].config
    )
    row: dict[str, object] = {"shift": args.shift, "knobs": knobs, "counts": counts}
    for strategy in ("source-only", "supervised"):
        cfg = configure(base, strategy, seed=args.seed)
        res = run_strategy(cfg, load_data(cfg), out / "cache")
        row[strategy] = round(res["val_miou"], 2)
        print(f"{tag} {strategy}: target-val mIoU {res['val_miou']:.1f}", flush=True)
    row["ratio"] = round(row["source-only"] / row["supervised"], 3)  # type: ignore[operator]
    row["seconds"] = round(time.perf_counter() - started)
    print(json.dumps(row))
    with (Path(args.out) / "results.jsonl").open("a") as f:
        f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
