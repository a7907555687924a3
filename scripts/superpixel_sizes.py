"""How many SLIC regions ``regions_per_image`` gives at 64x128 and at 1024x2048 (issue 24):
renders a few bundled target frames at both sizes, prints regions and pixels per region per
setting, and writes them to ``--out`` (JSON).

    .venv/bin/python scripts/superpixel_sizes.py --frames 3 --out outputs/superpixel-sizes.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from PIL import Image

from trainer.data.superpixels import superpixels
from trainer.data.synth import generate_benchmark

SIZES = ((64, 128), (1024, 2048))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=3)
    parser.add_argument("--settings", default="64,256,1024", help="regions_per_image values")
    parser.add_argument("--data", default="outputs/superpixel-sizes-data")
    parser.add_argument("--out", default="outputs/superpixel-sizes.json")
    args = parser.parse_args()
    rows = []
    for h, w in SIZES:
        counts = {"source-train": 1, "target-train": args.frames, "target-val": 1, "target-test": 1}
        root = generate_benchmark(Path(args.data) / f"{h}x{w}", height=h, width=w, counts=counts)
        images = sorted((root / "target-train" / "images").glob("*"))
        frames = [np.asarray(Image.open(p).convert("RGB")) for p in images]
        for n in (int(v) for v in args.settings.split(",")):
            started = time.perf_counter()
            regions = [int(superpixels(f, n).max()) + 1 for f in frames]
            seconds = (time.perf_counter() - started) / len(frames)
            row = {"size": [h, w], "regions_per_image": n, "regions": regions}
            row |= {"pixels_per_region": h * w / float(np.mean(regions)), "seconds": seconds}
            rows.append(row)
            print(
                f"{h}x{w} regions_per_image {n}: regions {regions}, "
                f"{row['pixels_per_region']:.0f} pixels a region, {seconds:.2f} s a frame"
            )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
