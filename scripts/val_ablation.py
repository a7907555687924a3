"""Target-val ablations on the bundled benchmark (the `standard` preset's data and schedule).

Model selection and every reading here use target-val only; target-test is not printed or
written. The studies:

* ``pseudo``: does the G_l pseudo-label loss (Eq. 5) help? al-as as is, without pseudo
  labels, with a smaller G_l (pi_low_quantile 0.2), ADA-MCU without pseudo labels, random.
* ``fda``: Algorithm 1 step 1 (source images aligned to the target before pre-training) with
  the built-in FDA at several band sizes: source-only target-val mIoU.
* ``fda-strategies``: al-as, ADA-MCU and random on a source model pre-trained with FDA.
* ``full-pseudo``: ADA-MCU (``full``) as is, without pseudo labels, with a smaller G_l
  (pi_low_quantile 0.2), and random: where ADA-MCU trails random (the hard shift at 1.7 %).
* ``pseudo-off``: ADA-MCU without its G_l pseudo labels and ``mcu-cap`` with true labels
  only (``cap_pseudo_below_rate`` 0), to read beside a bench's rows of the same seeds (the
  ladder's 256x512 rung at 0.1 %, where both trail pixelpick or random).
* ``cap-rule``: ``mcu-cap`` as is, with true labels only, and pixelpick (the row it trails at
  256x512, 0.1 %): on a shift or size no bench has run.
* ``contrast``: ADA-MCU with the paper's L_total = L_seg + L_con (weight 1.0) against 0.1.
* ``cap``: ``mcu-cap`` (our own strategy) against ADA-MCU (``full``) and with each of its
  switches undone in turn: no class cap, uniform within the group instead of impurity, no
  blanked window, G_l pseudo labels back in (run it at 0.1 %, where it trails ADA-MCU).
* ``cap-pseudo``: ``full``, ``mcu-cap`` and ``mcu-cap`` with G_l pseudo labels back in.
* ``high``: ``full`` with its high phase decaying pi_high until G_h supplies M_e/2
  (``high_catch_up``, the paper's reading) against once per pass (the rows add what G_h
  supplied: ``spent_high`` of ``high_expected``).

    .venv/bin/python scripts/val_ablation.py pseudo --out pseudo.json
    .venv/bin/python scripts/val_ablation.py fda --betas 0.03 0.06 0.1 0.2
    .venv/bin/python scripts/val_ablation.py fda-strategies --fda-beta 0.06
    .venv/bin/python scripts/val_ablation.py contrast --out contrast.json
    .venv/bin/python scripts/val_ablation.py cap --budgets 0.001 --seeds 0 1 2
    .venv/bin/python scripts/val_ablation.py cap-pseudo --budgets 0.005 0.017 --seeds 0 1 2
    .venv/bin/python scripts/val_ablation.py cap-pseudo --shift hard --budgets 0.001 0.005 0.017
    .venv/bin/python scripts/val_ablation.py full-pseudo --shift hard --budgets 0.017 --seeds 0 1 2
    .venv/bin/python scripts/val_ablation.py pseudo-off --size 256x512 --budgets 0.001 --seeds 1 2
    .venv/bin/python scripts/val_ablation.py cap-rule --shift hard --size 256x512 --budgets 0.001
    .venv/bin/python scripts/val_ablation.py high --budgets 0.017 0.068 --seeds 0

By default seeds 0 and 1, budgets 0.1 % and 1.7 % (one seed for ``fda``), the default shift
(``--shift hard`` for the other), 64x128 frames (``--size 256x512``: the same scenes as the
ladder's larger rung; a pre-training is the bench's when the data's meta.json is the same, so
``adamcu bench``'s ``cache/pretrain-*.pt`` copied into ``<work>/cache`` is reused), two worker
processes.
"""

from __future__ import annotations

import argparse
import json
import sys
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from trainer.bench.grid import _pretrain, _run  # noqa: E402
from trainer.bench.inputs import BENCH_SEED, parse_size  # noqa: E402
from trainer.bench.presets import PRESETS  # noqa: E402
from trainer.config import TrainConfig  # noqa: E402
from trainer.data.safety import UnsafeFolderError, claim_output_folder  # noqa: E402
from trainer.data.synth import DEFAULT_SHIFT, DEFAULT_SIZE, generate_benchmark  # noqa: E402
from trainer.strategies import configure  # noqa: E402

STUDIES: dict[str, dict[str, tuple[str, dict[str, Any]]]] = {
    "pseudo": {
        "al-as": ("al-as", {}),
        "al-as/no-pseudo": ("al-as", {"pseudo_labels": False}),
        "al-as/low0.2": ("al-as", {"pi_low_quantile": 0.2}),
        "full/no-pseudo": ("full", {"pseudo_labels": False}),
        "random": ("random", {}),
    },
    "full-pseudo": {  # where ADA-MCU trails random: its G_l pseudo labels (Eq. 5) off or smaller
        "full": ("full", {}),
        "full/no-pseudo": ("full", {"pseudo_labels": False}),
        "full/low0.2": ("full", {"pi_low_quantile": 0.2}),
        "random": ("random", {}),
    },
    "pseudo-off": {  # the two pseudo-label rules off, to read beside a bench's own rows
        "full/no-pseudo": ("full", {"pseudo_labels": False}),
        "mcu-cap/true-only": ("mcu-cap", {"cap_pseudo_below_rate": 0.0}),
    },
    "cap-rule": {  # mcu-cap's pseudo-label rule where it fires (0.1 %) against true labels only
        "mcu-cap": ("mcu-cap", {}),
        "mcu-cap/true-only": ("mcu-cap", {"cap_pseudo_below_rate": 0.0}),
        "pixelpick": ("pixelpick", {}),
    },
    "contrast": {
        "full/cw1.0": ("full", {"contrast_weight": 1.0}),
        "full/cw0.1": ("full", {"contrast_weight": 0.1}),
    },
    "cap": {
        "full": ("full", {}),
        "mcu-cap": ("mcu-cap", {}),
        "mcu-cap/class1.0": ("mcu-cap", {"cap_class_share": 1.0}),
        "mcu-cap/uniform": ("mcu-cap", {"cap_impurity": False}),
        "mcu-cap/radius0": ("mcu-cap", {"cap_radius_k": 0.0}),
        "mcu-cap/pseudo": ("mcu-cap", {"pseudo_labels": True, "mcu_true_labels": False}),
    },
    "cap-pseudo": {  # the cap study's one clear reading, at every budget and on both shifts
        "full": ("full", {}),
        "mcu-cap": ("mcu-cap", {}),
        "mcu-cap/pseudo": ("mcu-cap", {"pseudo_labels": True, "mcu_true_labels": False}),
    },
    "high": {  # Algorithm 1's high phase: pi_high decays until G_h supplies M_e/2, or per pass
        "full": ("full", {}),
        "full/per-pass": ("full", {"high_catch_up": False}),
    },
    "fda-strategies": {
        "al-as": ("al-as", {}),
        "full": ("full", {}),
        "random": ("random", {}),
    },
}


def plan(
    study: str,
    base: TrainConfig,
    betas: list[float],
    seeds: tuple[int, ...] = (0, 1),
    budgets: tuple[float, ...] = (0.001, 0.017),
) -> list[tuple[str, TrainConfig]]:
    if study == "fda":
        return [
            (f"source-only/fda{b:g}", configure(base, "source-only", fda_beta=b, seed=0))
            for b in betas
        ]
    runs = []
    for seed in seeds:
        for budget in budgets:
            for name, (strategy, changes) in STUDIES[study].items():
                # the variant's changes go on top of the strategy's (an ablation of its switches)
                cfg = configure(base, strategy, budget_rate=budget, seed=seed).replace(**changes)
                runs.append((name, cfg))
    return runs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("study", choices=sorted([*STUDIES, "fda"]))
    p.add_argument("--betas", type=float, nargs="+", default=[0.03, 0.06, 0.1, 0.2])
    p.add_argument("--fda-beta", type=float, default=0.06, help="for fda-strategies")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--budgets", type=float, nargs="+", default=[0.001, 0.017])
    p.add_argument("--shift", default=DEFAULT_SHIFT, help="the bundled benchmark's shift")
    p.add_argument("--size", default=None, help="HEIGHTxWIDTH of the generated images (64x128)")
    p.add_argument("--work", type=Path, default=ROOT / "outputs" / "val_ablation")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    try:
        height, width = parse_size(args.size) or DEFAULT_SIZE
    except ValueError as exc:
        p.error(str(exc))
    preset = PRESETS["standard"]
    try:  # checkpoints
        claim_output_folder(args.work, ".val-ablation", "scripts/val_ablation.py", "--work")
    except UnsafeFolderError as exc:
        sys.exit(f"val_ablation.py: {exc}")
    name = "data" if args.shift == DEFAULT_SHIFT else f"data-{args.shift}"
    if (height, width) != DEFAULT_SIZE:  # the ladder's larger rung (issue 20)
        name += f"-{height}x{width}"
    data, cache = args.work / name, args.work / "cache"
    generate_benchmark(
        data, height=height, width=width, counts=preset.counts, seed=BENCH_SEED, shift=args.shift
    )
    fda = args.fda_beta if args.study == "fda-strategies" else 0.0
    base = TrainConfig().replace(data_root=str(data), threads=1, fda_beta=fda, **preset.config)
    runs = plan(args.study, base, args.betas, tuple(args.seeds), tuple(args.budgets))
    rows = []
    with ProcessPoolExecutor(max_workers=2, mp_context=get_context("spawn")) as pool:
        seeds = {c.seed: c for _, c in runs if c.strategy != "source-only"}
        list(pool.map(_pretrain, [c.to_dict() for c in seeds.values()], [str(cache)] * len(seeds)))
        out = str(args.work)  # the runs' checkpoints go to <work>/checkpoints
        futures = [
            (name, pool.submit(_run, c.to_dict(), str(cache), out, args.shift)) for name, c in runs
        ]
        for name, fut in futures:
            r = fut.result()
            rows.append(
                {
                    "variant": name,
                    "shift": args.shift,
                    "budget_rate": r["budget_rate"],
                    "seed": r["seed"],
                    "val_miou": round(r["val_miou"], 2),
                    **{k: r[k] for k in ("spent_high", "high_expected") if k in r},
                }
            )
            print(
                f"{name:<20} budget {100 * r['budget_rate']:4.1f}% seed {r['seed']}: "
                f"target-val mIoU {r['val_miou']:.1f}"
                + (f", G_h {r['spent_high']} of {r['high_expected']}" if "spent_high" in r else ""),
                flush=True,
            )
    if args.out:
        args.out.write_text(json.dumps({"study": args.study, "runs": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
