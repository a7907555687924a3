"""pyproject.toml and the wheel's data files, checked without building (scripts/wheel_check.sh
builds and installs the wheel for real in CI)."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from server import resources

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
EXTRAS = PROJECT["optional-dependencies"]


def _names(reqs: list[str]) -> set[str]:
    return {re.split(r"[<>=\[ ;]", r, maxsplit=1)[0].lower() for r in reqs}


@pytest.mark.parametrize("name", sorted(PROJECT["scripts"]))
def test_console_scripts_point_at_functions(name: str) -> None:
    module, _, attr = PROJECT["scripts"][name].partition(":")
    target = getattr(importlib.import_module(module), attr)
    assert callable(target) and not isinstance(target, type(sys)), f"{name}: {module}:{attr}"


def test_extras_and_floors() -> None:
    assert {"server", "trainer", "cityscapes", "test"} <= set(EXTRAS)
    assert "torch" not in _names(PROJECT["dependencies"]) | _names(EXTRAS["server"])
    assert "torch" in _names(EXTRAS["trainer"])
    every = PROJECT["dependencies"] + [r for extra in EXTRAS.values() for r in extra]
    assert "python-multipart" not in _names(every)
    assert "pyyaml" not in _names(every) - _names(EXTRAS["test"])
    assert any(r.startswith("uvicorn[standard]>=0.37") for r in EXTRAS["server"])
    assert any(r.startswith("schemathesis>=4") for r in EXTRAS["test"])
    assert any(r.startswith("prometheus-client") for r in EXTRAS["server"])


def test_server_client_and_oracle_import_without_torch() -> None:
    code = (
        "import sys, server.main, server.migrate, client.api, oracle.cli, oracle.annotate; "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_data_files_come_from_the_package_first(tmp_path: Path, monkeypatch) -> None:
    for name in ("alembic.ini", "migrations", "web"):
        assert resources.require(name) == ROOT / name  # a source checkout
    (tmp_path / "web").mkdir()
    monkeypatch.setattr(resources, "PACKAGED", tmp_path)
    assert resources.web_dir() == tmp_path / "web"  # an installed wheel
    assert resources.require("alembic.ini") == ROOT / "alembic.ini"
    monkeypatch.setattr(resources, "SOURCE_TREE", tmp_path)
    with pytest.raises(FileNotFoundError, match="reinstall"):
        resources.require("alembic.ini")


def test_the_sdist_carries_what_the_wheel_copies() -> None:
    manifest = (ROOT / "MANIFEST.in").read_text()
    setup_py = (ROOT / "setup.py").read_text()
    bundled = re.search(r"BUNDLED = \(([^)]*)\)", setup_py).group(1)
    for name in re.findall(r'"([^"]+)"', bundled):
        assert re.search(rf"^(include|recursive-include) {re.escape(name)}\b", manifest, re.M)
