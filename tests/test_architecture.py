"""The import rules of docs/architecture.md, checked on every module's imports (lazy ones too)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("trainer", "server", "client", "oracle", "stack")
MATH = {
    "uncertainty",
    "sampling",
    "contrast",
    "dccm",
    "losses",
    "metrics",
    "model",
    "backbones",
    "labelbank",
    "constants",
    "step",
    "stepstats",
    "draws",
    "infonce",
    "pixel_sets",
    "ripu",
    "greedy",
    "baselines",
    "mcucap",
    "comparison",
    "forward",
}
IO_LIBS = {"httpx", "PIL", "sqlalchemy", "fastapi", "redis", "requests", "uvicorn", "alembic"}


def imports_of(path: Path) -> set[str]:
    """Every module name ``path`` imports, at any depth (``import a.b`` and ``from a.b import``)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def _top(name: str) -> str:
    return name.split(".")[0]


def violations(path: Path) -> list[str]:
    rel = path.relative_to(ROOT)
    room, parts = rel.parts[0], rel.with_suffix("").parts
    found = []
    for name in sorted(imports_of(path)):
        top = _top(name)
        if top == "stack" and room != "stack":
            found.append(f"{rel}: imports {name} (nothing imports the launchers)")
        if room in ("server", "client", "oracle") and top == "trainer":
            found.append(f"{rel}: imports {name} ({room}/ never imports the trainer)")
        if room == "server" and top in ("client", "oracle"):
            found.append(f"{rel}: imports {name} (server/ imports nothing of the other rooms)")
        if room in ("client", "oracle") and top == "torch":
            found.append(f"{rel}: imports torch ({room}/ is torch-free)")
        if room in ("client", "oracle", "trainer") and top == "server" and name != "server.schemas":
            found.append(f"{rel}: imports {name} (only server.schemas is shared)")
        if room == "client" and top == "oracle":
            found.append(f"{rel}: imports {name} (client/ imports no other room)")
        if room == "trainer" and top == "client" and parts[1] != "worker":
            found.append(f"{rel}: imports {name} (only trainer/worker/ talks to the service)")
        if room == "trainer" and len(parts) == 2 and parts[1] in MATH:
            if top in IO_LIBS or top in ("client", "server") and name != "server.schemas":
                found.append(f"{rel}: imports {name} (the math modules do no I/O)")
            if name.startswith(("trainer.data", "trainer.worker", "trainer.bench")):
                found.append(f"{rel}: imports {name} (the math imports no edge of the trainer)")
    if rel.as_posix() == "server/schemas.py":
        allowed = {"pydantic", "__future__", "math", "datetime", "decimal", "typing", "re"}
        found += [
            f"{rel}: imports {n} (the contract is pure)"
            for n in imports_of(path)
            if _top(n) not in allowed
        ]
    return found


@pytest.mark.parametrize("package", PACKAGES)
def test_rooms_import_only_what_they_may(package: str) -> None:
    found = [v for path in modules(package) for v in violations(path)]
    assert not found, "\n".join(found)


def test_checker_catches_a_forbidden_import(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / "client" / "bad.py"
    fake.parent.mkdir()
    fake.write_text("def f():\n    import torch\n    from trainer.step import x\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    found = violations(fake)
    assert any("torch" in v for v in found) and any("trainer.step" in v for v in found)


@pytest.mark.parametrize("module", ["client.api", "server.main", "oracle.cli"])
def test_torch_free_rooms_load_without_torch(module: str) -> None:
    """A server-only or client-only install needs no torch: importing them loads none."""
    code = f"import sys, {module}; sys.exit('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True)
    assert result.returncode == 0, f"{module} imports torch\n{result.stderr.decode()}"
