"""The import rules of docs/architecture.md, checked on every module's imports (lazy ones too)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("trainer", "server", "client", "oracle", "stack")
# The trainer's rooms (docs/architecture.md): what each may import besides the vocabulary at
# the trainer's root (constants, config, strategies), which every room may import.
TRAINER_ROOMS: dict[str, set[str]] = {
    "": set(),
    "ops": set(),
    "nets": {"ops"},
    "selection": {"ops"},
    "learning": {"ops", "nets"},
    "data": {"ops"},
    "loop": {"ops", "nets", "selection", "learning", "data"},
    "distributed": {"ops", "nets", "selection", "learning", "data", "loop"},
    "bench": {"ops", "nets", "selection", "learning", "data", "loop", "distributed"},
    "worker": {"ops", "nets", "selection", "learning", "data", "loop"},
}
# the rooms of pure tensor math: no I/O, no edge of the trainer
MATH_ROOMS = {"", "ops", "nets", "selection", "learning"}
MAX_ROOT_MODULES = 8
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


def _contract(name: str) -> bool:
    """The wire contract: ``server.schemas`` and its pure parts ``server.schemas_*``."""
    return name == "server.schemas" or name.startswith("server.schemas_")


def trainer_room(parts: tuple[str, ...]) -> str:
    """The room of a module under trainer/ ("" for the vocabulary at its root)."""
    return parts[1] if len(parts) > 2 else ""


def _trainer_room_violations(rel: Path, parts: tuple[str, ...], name: str) -> list[str]:
    room, target = trainer_room(parts), name.split(".")
    other = target[1] if len(target) > 2 or (ROOT / "trainer" / target[-1]).is_dir() else ""
    if len(target) == 1 or other == room or other == "":
        return []
    if other not in TRAINER_ROOMS[room]:
        return [f"{rel}: imports {name} (trainer/{room or '.'} may not import trainer/{other}/)"]
    return []


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
        if room in ("client", "oracle", "trainer") and top == "server" and not _contract(name):
            found.append(f"{rel}: imports {name} (only the contract, server.schemas*, is shared)")
        if room == "client" and top == "oracle":
            found.append(f"{rel}: imports {name} (client/ imports no other room)")
        if room == "trainer" and top == "client" and parts[1] != "worker":
            found.append(f"{rel}: imports {name} (only trainer/worker/ talks to the service)")
        if room == "trainer" and top == "trainer":
            found += _trainer_room_violations(rel, parts, name)
        if room == "trainer" and trainer_room(parts) in MATH_ROOMS:
            if top in IO_LIBS or top in ("client", "server") and not _contract(name):
                found.append(f"{rel}: imports {name} (the math rooms do no I/O)")
    if rel.parent.as_posix() == "server" and _contract(f"server.{rel.stem}"):
        allowed = {"pydantic", "__future__", "math", "datetime", "decimal", "typing", "re"}
        found += [
            f"{rel}: imports {n} (the contract is pure)"
            for n in imports_of(path)
            if _top(n) not in allowed and n != "server.schemas"
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
    fake.write_text("def f():\n    import torch\n    from trainer.loop.step import x\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    found = violations(fake)
    assert any("torch" in v for v in found) and any("trainer.loop.step" in v for v in found)


@pytest.mark.parametrize("module", ["client.api", "server.main", "oracle.cli"])
def test_torch_free_rooms_load_without_torch(module: str) -> None:
    """A server-only or client-only install needs no torch: importing them loads none."""
    code = f"import sys, {module}; sys.exit('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True)
    assert result.returncode == 0, f"{module} imports torch\n{result.stderr.decode()}"


def test_trainer_checker_catches_a_room_crossing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / "trainer" / "selection" / "bad.py"
    fake.parent.mkdir(parents=True)
    (tmp_path / "trainer" / "learning").mkdir()
    fake.write_text("from trainer.learning.losses import x\nfrom trainer.ops.draws import y\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert violations(fake) == [
        "trainer/selection/bad.py: imports trainer.learning.losses"
        " (trainer/selection may not import trainer/learning/)"
    ]


def test_trainer_root_holds_only_the_vocabulary() -> None:
    root = sorted(p.name for p in (ROOT / "trainer").glob("*.py"))
    assert len(root) <= MAX_ROOT_MODULES, root
    rooms = {p.name for p in (ROOT / "trainer").iterdir() if (p / "__init__.py").exists()}
    assert rooms == set(TRAINER_ROOMS) - {""}


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the project modules it imports (lazy imports too; ``from a import b`` is an
    edge to the module ``a.b`` where that is a module, else to ``a``)."""
    paths = [p for package in PACKAGES for p in sorted((root / package).rglob("*.py"))]
    known = {module_name(p, root) for p in paths}
    graph: dict[str, set[str]] = {}
    for path in paths:
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                edges |= {a.name for a in node.names if a.name in known}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    sub = f"{node.module}.{alias.name}"
                    edges.add(sub if sub in known else node.module)
        me = module_name(path, root)
        graph[me] = {e for e in edges if e in known and e != me}
    return graph


def import_circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return circles


def test_no_import_circle_anywhere() -> None:
    circles = import_circles(import_graph(ROOT))
    assert not circles, "import circles:\n" + "\n".join(" <-> ".join(c) for c in circles)


def test_circle_finder_finds_a_lazy_circle(tmp_path: Path) -> None:
    (tmp_path / "stack").mkdir()
    (tmp_path / "stack" / "a.py").write_text("from stack.b import f\n")
    (tmp_path / "stack" / "b.py").write_text("def f():\n    from stack import a\n")
    (tmp_path / "stack" / "c.py").write_text("import stack.a\n")
    assert import_circles(import_graph(tmp_path)) == [["stack.a", "stack.b"]]
