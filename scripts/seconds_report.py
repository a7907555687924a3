"""Merge the results of several `adamcu bench --preset seconds` runs (e.g. one per shift) into
one table and one plot: ``seconds.md`` (mean +- std over seeds per shift, strategy and budget)
and ``miou_vs_hours.png`` (target-test mIoU against Cityscapes-equivalent annotator hours).

    .venv/bin/python scripts/seconds_report.py --results outputs/bench-seconds/results.json \\
        outputs/bench-seconds-hard/results.json --out docs/bench-seconds
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from trainer.bench.presets import PRESETS
from trainer.bench.seconds_report import seconds_plot, seconds_table


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", nargs="+", required=True, help="results.json files")
    parser.add_argument("--out", required=True, help="folder for results.json, seconds.md, plot")
    args = parser.parse_args()
    out = Path(args.out)
    written = {(out / name).resolve() for name in ("results.json", "seconds.md")}
    inputs = [p for p in args.results if Path(p).resolve() in written]
    if inputs:  # a bench's own results.json would be replaced by the merge
        what = f"seconds_report: --out {out} would overwrite its input {inputs[0]}"
        print(f"{what}; give --out a folder of its own (e.g. docs/bench-seconds)", file=sys.stderr)
        return 2
    reports = [json.loads(Path(p).read_text()) for p in args.results]
    results = [r for rep in reports for r in rep["results"]]
    images = PRESETS["seconds"].counts["target-train"]
    out.mkdir(parents=True, exist_ok=True)
    merged = {"preset": "seconds", "sources": args.results, "results": results}
    merged["seconds"] = sum(rep.get("seconds", 0.0) for rep in reports)
    (out / "results.json").write_text(json.dumps(merged, indent=1))
    (out / "seconds.md").write_text(seconds_table(results, images))
    seconds_plot(results, images, out / "miou_vs_hours.png")
    print(seconds_table(results, images))
    print(f"-> {out}/results.json, seconds.md, miou_vs_hours.png ({len(results)} runs)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
