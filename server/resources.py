"""Where the files the server reads at run time lie: ``alembic.ini``, ``migrations/``, ``web/``.

A wheel carries them inside the package as ``server/_data/`` (see setup.py); a source checkout
or an editable install reads them from the top of the tree. The package copy wins, so an
unrelated top-level ``migrations`` folder in site-packages is never picked up.
"""

from __future__ import annotations

from pathlib import Path

PACKAGED = Path(__file__).resolve().parent / "_data"
SOURCE_TREE = Path(__file__).resolve().parent.parent


def find(name: str) -> Path | None:
    """``name`` in the package data, else in the source tree; None when neither has it."""
    for base in (PACKAGED, SOURCE_TREE):
        if (base / name).exists():
            return base / name
    return None


def require(name: str) -> Path:
    path = find(name)
    if path is None:
        raise FileNotFoundError(
            f"{name} is neither in {PACKAGED} nor in {SOURCE_TREE}: reinstall adamcu "
            "(pip install 'adamcu[server]') or run from a source checkout"
        )
    return path


def web_dir() -> Path:
    """The web UI's folder (the packaged path when none exists: the server warns)."""
    return find("web") or PACKAGED / "web"


def package_version() -> str:
    """The installed distribution's version (``adamcu --version``, the OpenAPI document)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("adamcu")
    except PackageNotFoundError:  # a bare source checkout on PYTHONPATH
        return "0+unknown"
