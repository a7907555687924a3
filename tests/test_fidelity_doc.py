"""docs/fidelity.md names real things: every function and test it cites exists, every
TrainConfig field is in its field list, and every deviation switch has a row in its tables."""

from __future__ import annotations

import importlib
import re
from dataclasses import fields
from pathlib import Path

from trainer.config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
DOC = (ROOT / "docs" / "fidelity.md").read_text()
TABLES, _, FIELDS = DOC.partition("## Every `TrainConfig` field")


def test_every_function_named_exists() -> None:
    named = re.findall(r"`(trainer/[\w/]+)\.py:([\w.]+)`", DOC)
    assert len(named) > 20
    for path, name in named:
        obj = importlib.import_module(path.replace("/", "."))
        for part in name.split("."):
            obj = getattr(obj, part)  # AttributeError names what is missing
        assert callable(obj), f"{path}.py:{name} is not a function"


def test_every_test_named_exists() -> None:
    named = re.findall(r"`(tests/[\w/]+\.py)::(\w+)`", DOC)
    assert len(named) > 20
    for path, name in named:
        text = (ROOT / path).read_text()
        assert re.search(rf"^def {name}\(", text, re.M), f"{path}::{name} does not exist"


def test_every_config_field_is_named_and_every_switch_has_a_row() -> None:
    listed = set(re.findall(r"`(\w+)`", FIELDS))
    missing = [f.name for f in fields(TrainConfig) if f.name not in listed]
    assert not missing, f"TrainConfig fields not in docs/fidelity.md: {missing}"
    switches = FIELDS.split("- **Deviation switches**")[1].split("- **")[0]
    rows = set(re.findall(r"`(\w+)`", TABLES))
    no_row = [name for name in re.findall(r"`(\w+)`", switches) if name not in rows]
    assert not no_row, f"deviation switches without a row in docs/fidelity.md: {no_row}"
