"""Memory and speed of the trainer's label bank at Cityscapes' size (2975 images of 1024x2048).

For each labeled rate (default 0.1 % and 5 %) a ``LabelBank`` is filled with random pixels,
each image on its own (pixels i.i.d. Bernoulli(rate): sorted offsets drawn as geometric gaps),
merged ``--chunk`` images at a time with random classes and groups. Then it times, at that
size, a merge of ``--merge-pixels`` new pixels over ``--batch`` images, the same number of
corrections (pixels already labeled), a ``batch()`` of ``--batch`` full-size images, and a
``state_dict`` round trip. Reports the bank's bytes, the process RSS growth (an upper bound:
allocator slack included), the dense bank of earlier versions (3 bytes a pixel, computed, not
allocated) and the entropy bound: the bits any coding needs for i.i.d. positions
(N*H*W*h(rate)) plus a class in 19 each. Prints JSON and writes it to ``--out``.

    PYTHONPATH=$PWD .venv/bin/python scripts/labelbank_bench.py
    PYTHONPATH=$PWD .venv/bin/python scripts/labelbank_bench.py --images 100 --rates 0.05
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from trainer.constants import GROUP_CODES, IGNORE_INDEX  # noqa: E402
from trainer.learning.labelbank import LabelBank  # noqa: E402

CLASSES = 19
MB = 1e6


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def _offsets(pixels: int, rate: float, gen: torch.Generator) -> torch.Tensor:
    """Sorted offsets in [0, pixels) of a Bernoulli(rate) process: cumulated geometric gaps."""
    if rate >= 1:
        return torch.arange(pixels)
    draw = int(pixels * rate + 6 * math.sqrt(pixels * rate) + 16)
    gaps = torch.empty(draw, dtype=torch.float64).geometric_(rate, generator=gen)
    offsets = gaps.long().cumsum(0) - 1
    return offsets[offsets < pixels]


def fill(bank: LabelBank, rate: float, chunk: int, gen: torch.Generator) -> dict:
    """Merge random pixels of every image, ``chunk`` images a merge; returns timings."""
    n, h, w = bank.shape
    names = sorted(GROUP_CODES)
    start, merges = time.perf_counter(), 0
    for first in range(0, n, chunk):
        rows = range(first, min(n, first + chunk))
        parts = [_offsets(h * w, rate, gen) for _ in rows]
        index = torch.cat([torch.full((len(p),), r) for r, p in zip(rows, parts, strict=True)])
        offsets = torch.cat(parts)
        classes = torch.randint(CLASSES, (len(offsets),), generator=gen)
        bank.merge(index, offsets // w, offsets % w, classes, names[merges % len(names)])
        merges += 1
    return {"fill_seconds": time.perf_counter() - start, "fill_merges": merges}


def _median_ms(fn, repeats: int) -> float:  # noqa: ANN001
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1e3 * statistics.median(times)


def timings(bank: LabelBank, batch: int, merge_pixels: int, gen: torch.Generator) -> dict:
    """Merge (new pixels, then corrections), batch() and a state_dict round trip at size."""
    n, h, w = bank.shape
    rows = torch.randperm(n, generator=gen)[:batch]

    def pixels() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        index = rows[torch.randint(len(rows), (merge_pixels,), generator=gen)]
        return (
            index,
            torch.randint(h, (merge_pixels,), generator=gen),
            torch.randint(w, (merge_pixels,), generator=gen),
        )

    def merge_new() -> None:
        index, ys, xs = pixels()
        bank.merge(index, ys, xs, torch.randint(CLASSES, (merge_pixels,), generator=gen), "high")

    labels, _, _ = bank.batch(rows)
    idx, ys, xs = (labels != IGNORE_INDEX).nonzero(as_tuple=True)
    pick = torch.randperm(len(idx), generator=gen)[:merge_pixels]
    old = (rows[idx[pick]], ys[pick], xs[pick])

    def merge_corrections() -> None:
        bank.merge(*old, torch.randint(CLASSES, (len(pick),), generator=gen), "medium")

    def round_trip() -> None:
        LabelBank(1, 1, 1).load_state_dict(bank.state_dict())

    return {
        "merge_new_ms": _median_ms(merge_new, 20),
        "merge_corrections_ms": _median_ms(merge_corrections, 20),
        "batch_ms": _median_ms(lambda: bank.batch(rows), 10),
        "state_dict_round_trip_s": _median_ms(round_trip, 1) / 1e3,
    }


def entropy_bound_bytes(pixels: int, rate: float) -> float:
    """Bytes any coding of i.i.d. Bernoulli(rate) positions plus a class in CLASSES needs."""
    h = -rate * math.log2(rate) - (1 - rate) * math.log2(1 - rate) if 0 < rate < 1 else 0.0
    return (pixels * h + pixels * rate * math.log2(CLASSES)) / 8


def one_rate(shape: tuple[int, int, int], rate: float, args: argparse.Namespace) -> dict:
    gen = torch.Generator().manual_seed(args.seed)
    gc.collect()
    rss0 = _rss_bytes()
    bank = LabelBank(*shape)
    out = {"rate": rate, **fill(bank, rate, args.chunk, gen)}
    gc.collect()
    pixels = bank.num_pixels
    out.update(
        labeled_pixels=bank.num_labeled,
        labeled_rate=bank.num_labeled / pixels,
        bank_mb=bank.nbytes() / MB,
        bytes_per_labeled_pixel=bank.nbytes() / max(bank.num_labeled, 1),
        rss_growth_mb=(_rss_bytes() - rss0) / MB,
        dense_bank_mb=3 * pixels / MB,
        entropy_bound_mb=entropy_bound_bytes(pixels, rate) / MB,
    )
    out.update(timings(bank, args.batch, args.merge_pixels, gen))
    print(json.dumps(out), flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--images", type=int, default=2975)
    p.add_argument("--height", type=int, default=1024)
    p.add_argument("--width", type=int, default=2048)
    p.add_argument("--rates", type=float, nargs="+", default=[0.001, 0.05])
    p.add_argument("--chunk", type=int, default=64, help="images per merge while filling")
    p.add_argument("--batch", type=int, default=4, help="images of the timed batch() and merges")
    p.add_argument("--merge-pixels", type=int, default=400)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=ROOT / "outputs" / "labelbank_bench.json")
    args = p.parse_args(argv)
    if not all(0 < r <= 1 for r in args.rates):
        p.error("--rates must be in (0, 1]")
    torch.set_num_threads(args.threads)
    shape = (args.images, args.height, args.width)
    start = time.perf_counter()
    results = [one_rate(shape, rate, args) for rate in args.rates]
    report = {
        "shape": list(shape),
        "threads": args.threads,
        "torch": torch.__version__,
        "results": results,
        "seconds": time.perf_counter() - start,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
