"""Spell out, in every paper config (trainer/configs/*.toml), each TrainConfig field the file
does not set, at today's default, under a block that says which are the paper's and which ours.

    .venv/bin/python scripts/paper_config_fields.py          # report what is missing
    .venv/bin/python scripts/paper_config_fields.py --write  # append the missing fields

A config that sets every field does not change when a default changes; the test
``tests/trainer/data/test_paper_configs.py`` fails while a field is missing. Only files under
trainer/configs/ (the project's own) are ever written.
"""

from __future__ import annotations

import argparse
import json
import sys
import tomllib
from dataclasses import fields
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from trainer.config import TrainConfig  # noqa: E402

# why each value is what it is: the paper states none of these (section III-IV, Algorithm 1)
WHY = {
    "init_checkpoint": "ours: adaptation starts from this run's own pretraining",
    "iterations": "ours: 0 = the schedule in passes above",
    "pi_high_quantile": "ours: the paper starts pi_high 'with a large value' (IV-C)",
    "pi_low_quantile": "ours: the paper gives no pi_low; it never moves",
    "high_cap_factor": "ours: pacing of the high phase (Algorithm 1 gives none)",
    "high_catch_up": "Algorithm 1 line 7: pi_high decays until M_e/2 comes from G_h",
    "score_dropout": "ours: Eq. 1 on the eval-mode forward",
    "dccm_beta": "ours: the paper's Eq. 8 beta has no stated value",
    "temperature": "ours: the paper's lambda (InfoNCE temperature) has no stated value",
    "weight_mode": "ours: how the DCCM weights enter Eq. 9-11",
    "contrast_weight": "L_total = L_seg + L_con (III-D3): weight 1",
    "max_anchors_per_class": "ours: caps of the MCUs (the paper gives none)",
    "max_samples_per_class": "ours: caps of the MCUs (the paper gives none)",
    "target_weight": "Eq. 6: target loss at weight 1",
    "aux_target_loss": "ours: the aux head also learns the labeled target pixels",
    "pseudo_only_batches": "ours",
    "min_low_share": "ours (pseudo_only_batches only)",
    "mcu_true_labels": "the paper: G_l pseudo labels enter the MCUs",
    "source_flip": "ours: source flipped at random (the paper names no augmentation)",
    "source_distinct": "ours: source drawn with replacement (Alg. 1 line 5: 'randomly load')",
    "pi_high_floor": "ours: pi_high stops at pi_low (Alg. 1 line 7 has no floor)",
    "pseudo_after_budget": "ours: G_l pseudo labels from the start (Alg. 1 l. 11-12: after M_e)",
    "mcu_low_pixels": "ours: every G_l pixel enters the MCUs ('sampled': Eq. 5's AS draw)",
    "dccm_freeze_absent": "ours: an absent class's DCCM row is kept (Eq. 8 updates all)",
    "c2c_self_positive": "ours: an intra-level class centre is its own positive",
    "center_scope": "ours: centres per (image, class) (III-C1: per domain)",
    "center_pixels": "ours: centres of the drawn G_l pixels (III-C1: every G_l pixel)",
    "query_kind": "the paper: pixel queries (issue 24: regions need a seconds budget)",
    "regions_per_image": "ours: SLIC superpixels a frame (region queries only)",
    "budget_seconds_per_image": "the paper: a budget in pixels (> 0: annotator seconds)",
    "cost_spread": "ours: the simulated annotator's spread of seconds (seconds budgets only)",
    "compile_step": "execution, no effect on the result",
    "fixed_shapes": "execution, no effect on the result",
    "threads": "execution, no effect on the result",
}
OFF = "comparison rows / mcu-cap only; not used by this strategy"


def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return repr(value)


def missing(path: Path) -> list[str]:
    have = tomllib.loads(path.read_text())
    return [f.name for f in fields(TrainConfig) if f.name not in have]


def block(names: list[str]) -> str:
    default = TrainConfig()
    lines = ["", "# every other field, spelled out (a later default must not change this run)"]
    for name in names:
        if name == "extra":
            continue
        value = getattr(default, name)
        if value is None:
            value = ""  # TOML has no null: "" reads as none
        lines.append(f"{name} = {toml_value(value)}  # {WHY.get(name, OFF)}")
    if "extra" in names:
        lines += ["", "[extra]  # free-form notes carried into the checkpoint"]
    return "\n".join(lines) + "\n"


def appended(text: str, more: str) -> str:
    """``text`` with ``more`` (:func:`block`) added before its ``[extra]`` table (TOML keys
    after a table header belong to that table), or at its end; into the spelled-out block
    when the file has one."""
    header = "\n# every other field, spelled out"
    if header in text:  # join the block already there
        more = "".join(line + "\n" for line in more.splitlines()[2:])
    head, sep, tail = text.partition("\n[extra]")
    if not sep:
        return text.rstrip("\n") + "\n" + more
    return head.rstrip("\n") + "\n" + more.rstrip("\n") + "\n" + sep + tail


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true", help="append the missing fields")
    args = parser.parse_args()
    status = 0
    for path in sorted((ROOT / "trainer" / "configs").glob("*.toml")):
        names = missing(path)
        if not names:
            continue
        print(f"{path.relative_to(ROOT)}: {len(names)} fields missing: {', '.join(names)}")
        if args.write:
            path.write_text(appended(path.read_text(), block(names)))
        else:
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
