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
from trainer.data.synth import DEFAULT_SIZE, SHIFTS, generate_benchmark
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
    shifts: list[str] | None = None,
    size: tuple[int, int] | None = None,
) -> Preset:
    """The preset with its strategies / budgets / seeds / shifts / image size (height, width)
    replaced where given (checked)."""
    unknown = sorted(set(strategies or ()) - set(STRATEGIES))
    if unknown:
        raise ValueError(f"unknown strategies {unknown}; choose from {sorted(STRATEGIES)}")
    unknown = sorted(set(shifts or ()) - set(SHIFTS))
    if unknown:
        raise ValueError(f"unknown shifts {unknown}; choose from {sorted(SHIFTS)}")
    bad = [b for b in budgets or () if not 0.0 < b <= 1.0]
    if bad:
        raise ValueError(f"budgets are shares of target pixels in (0, 1], got {bad}")
    changes = {
        "strategies": tuple(strategies) if strategies else None,
        "ablation": () if strategies else None,  # narrowed: just the strategies asked for
        "budgets": tuple(budgets) if budgets else None,
        "seeds": tuple(seeds) if seeds else None,
        "shifts": tuple(shifts) if shifts else None,
        "size": tuple(size) if size else None,
    }
    return dataclasses.replace(preset, **{k: v for k, v in changes.items() if v is not None})


def parse_size(text: str | None) -> tuple[int, int] | None:
    """``"256x512"`` (height x width pixels) -> (256, 512); None or "" -> None (the preset's)."""
    if not text:
        return None
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"--size wants HEIGHTxWIDTH like 256x512, got {text!r}") from None
    if height < 8 or width < 8:
        raise ValueError(f"--size wants at least 8x8 pixels, got {text!r}")
    return height, width


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
    ``data_dir/<shift>`` (``data_dir/<shift>-<H>x<W>`` at a size other than the default 64x128;
    cached by the generator's meta.json)."""
    if is_user_dataset(data_dir):
        validate_folder(data_dir)  # a clear error before any worker starts
        missing = [s for s in splits if not (Path(data_dir) / s / "images").is_dir()]
        if missing:
            raise ValueError(f"{data_dir}: bench needs the splits {splits}; missing {missing}")
        return {USER_DATA: Path(data_dir)}
    height, width = preset.size
    tail = "" if preset.size == DEFAULT_SIZE else f"-{height}x{width}"
    return {
        shift: generate_benchmark(
            Path(data_dir) / f"{shift}{tail}",
            height=height,
            width=width,
            counts=preset.counts,
            seed=BENCH_SEED,
            shift=shift,
            workers=2,
        )
        for shift in preset.shifts
    }
