"""What ``adamcu bench`` runs on: the grid narrowed by the command line, and the data folder.

``--data DIR`` that holds a dataset the generator did not write (a ``classes.json`` without the
generator's ``meta.json``) is used as it is: its splits, its image counts, nothing written into
it. Any other folder gets the generated benchmark at the preset's image counts (and
``trainer.data.safety`` refuses a non-empty folder that is not the generator's).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

from trainer.data.safety import is_user_dataset
from trainer.data.synth import generate_benchmark
from trainer.data.validate import validate_folder
from trainer.strategies import STRATEGIES

if TYPE_CHECKING:
    from trainer.bench.presets import Preset

BENCH_SEED = 1234  # the generated benchmark's seed

USER_DATA = "user"  # the "shift" of a user's own folder in results.json


def split_list(text: str | None) -> list[str] | None:
    """``"a,b"`` -> ["a", "b"]; None or "" -> None (keep the preset's)."""
    if not text:
        return None
    return [t.strip() for t in text.split(",") if t.strip()]


def narrow(
    preset: Preset,
    strategies: list[str] | None = None,
    budgets: list[float] | None = None,
    seeds: list[int] | None = None,
) -> Preset:
    """The preset with its strategies / budgets / seeds replaced where given (checked)."""
    unknown = sorted(set(strategies or ()) - set(STRATEGIES))
    if unknown:
        raise ValueError(f"unknown strategies {unknown}; choose from {sorted(STRATEGIES)}")
    bad = [b for b in budgets or () if not 0.0 < b <= 1.0]
    if bad:
        raise ValueError(f"budgets are shares of target pixels in (0, 1], got {bad}")
    changes = {
        "strategies": tuple(strategies) if strategies else None,
        "ablation": () if strategies else None,  # narrowed: just the strategies asked for
        "budgets": tuple(budgets) if budgets else None,
        "seeds": tuple(seeds) if seeds else None,
    }
    return dataclasses.replace(preset, **{k: v for k, v in changes.items() if v is not None})


def parse_grid(
    strategies: str | None, budgets: str | None, seeds: str | None
) -> tuple[list[str] | None, list[float] | None, list[int] | None]:
    """The command line's comma lists; ValueError naming the flag on a bad number."""
    try:
        rates = [float(b) for b in split_list(budgets) or []] or None
    except ValueError:
        raise ValueError(f"--budgets wants numbers like 0.001,0.017, got {budgets!r}") from None
    try:
        seed_list = [int(s) for s in split_list(seeds) or []] or None
    except ValueError:
        raise ValueError(f"--seeds wants integers like 0,1, got {seeds!r}") from None
    return split_list(strategies), rates, seed_list


def prepare_data(data_dir: Path, preset: Preset, splits: list[str]) -> dict[str, Path]:
    """The data sets of a bench, by shift: a user's folder as it is (``{"user": data_dir}``,
    checked first), or the benchmark generated per shift of the preset under
    ``data_dir/<shift>`` (cached by the generator's meta.json)."""
    if is_user_dataset(data_dir):
        validate_folder(data_dir)  # a clear error before any worker starts
        missing = [s for s in splits if not (Path(data_dir) / s / "images").is_dir()]
        if missing:
            raise ValueError(f"{data_dir}: bench needs the splits {splits}; missing {missing}")
        return {USER_DATA: Path(data_dir)}
    return {
        shift: generate_benchmark(
            Path(data_dir) / shift, counts=preset.counts, seed=BENCH_SEED, shift=shift
        )
        for shift in preset.shifts
    }
