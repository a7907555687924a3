"""Build hook: ship alembic.ini, migrations/ and web/ in the wheel as ``server/_data/``.

They stay at the top of the source tree (``alembic`` and the tests use them there); a wheel
copies them into the server package, where ``server/resources.py`` finds them first. Editable
installs skip the copy and read the source tree. Everything else is in pyproject.toml.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
BUNDLED = ("alembic.ini", "migrations", "web")


class BuildWithData(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        target = Path(self.build_lib) / "server" / "_data"
        skip = shutil.ignore_patterns("__pycache__", "*.pyc")
        for name in BUNDLED:
            source, dest = ROOT / name, target / name
            if not source.exists():
                raise SystemExit(f"setup.py: {source} is missing (MANIFEST.in must list it)")
            dest.parent.mkdir(parents=True, exist_ok=True)
            if source.is_dir():
                shutil.copytree(source, dest, dirs_exist_ok=True, ignore=skip)
            else:
                shutil.copy2(source, dest)


setup(cmdclass={"build_py": BuildWithData})
