"""Target-val ablation of the region size (issue 24): region strategies at one budget in
annotator seconds with several ``regions_per_image``, on the `seconds` preset's data and
pre-training cache (run ``adamcu bench --preset seconds`` first). Prints target-val (the
choice) and target-test (reported) mIoU and writes them to ``--out`` (JSON).

    .venv/bin/python scripts/region_ablation.py --seconds 0.3025 --regions 64,256 \\
        --strategies region-random,region-cap --out outputs/region-ablation.json
"""

from __future__ import annotations

import argparse
import json
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

from trainer.bench.presets import PRESETS


def _one(job: tuple[str, float, int, int, str, str]) -> dict:
    from trainer.bench.experiment import run_strategy
    from trainer.config import TrainConfig
    from trainer.loop.train import load_data
    from trainer.strategies import configure

    strategy, seconds, regions, seed, data, cache = job
    base = TrainConfig(data_root=data, threads=1).replace(**PRESETS["seconds"].config)
    cfg = configure(base, strategy, budget_seconds_per_image=seconds, seed=seed)
    cfg = cfg.replace(regions_per_image=regions)
    res = run_strategy(cfg, load_data(cfg), Path(cache))
    keep = ("strategy", "seed", "val_miou", "test_miou", "spent_seconds", "labeled_pixels")
    keep += ("regions_asked", "region_noise")
    return {"regions_per_image": regions, "seconds_per_image": seconds} | {k: res[k] for k in keep}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=0.3025)
    parser.add_argument("--regions", default="64,256")
    parser.add_argument("--strategies", default="region-random,region-cap")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--data", default="outputs/bench-seconds-data/moderate")
    parser.add_argument("--cache", default="outputs/bench-seconds/cache")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", default="outputs/region-ablation.json")
    args = parser.parse_args()
    jobs = [
        (s, args.seconds, int(r), int(seed), args.data, args.cache)
        for s in args.strategies.split(",")
        for r in args.regions.split(",")
        for seed in args.seeds.split(",")
    ]
    with ProcessPoolExecutor(args.workers, mp_context=get_context("spawn")) as pool:
        rows = list(pool.map(_one, jobs))
    for r in rows:
        print(
            f"{r['strategy']:<14} regions_per_image {r['regions_per_image']:>5} seed {r['seed']}: "
            f"val {r['val_miou']:.1f} test {r['test_miou']:.1f}, {r['labeled_pixels']} labels, "
            f"{r['regions_asked']} regions, noise {100 * (r['region_noise'] or 0):.1f} %"
        )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
