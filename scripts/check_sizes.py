"""Size limits of the house rules: no file over 350 lines, no function over 60 lines, no
function with more than 8 parameters.

    python scripts/check_sizes.py              # the whole repository (tests/ excluded)
    python scripts/check_sizes.py trainer/bench trainer/loop/step.py

Walks the given files and folders (default: the repository root) for ``*.py`` files, skipping
``tests/``, virtual environments and ``migrations/versions``; a function's length is counted
with ``ast`` from its ``def`` line (decorators included) to its last line. Its parameters are
every name it takes (positional, keyword-only, ``*args`` and ``**kwargs`` count one each),
except a method's leading ``self`` or ``cls``: more than 8, and the values belong together in
a dataclass. Prints every offender and exits 1 if there is one, 0 otherwise.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterator
from pathlib import Path

MAX_FILE_LINES = 350
MAX_FUNCTION_LINES = 60
MAX_PARAMETERS = 8
ROOT = Path(__file__).resolve().parent.parent
SKIP_DIRS = {"tests", ".venv", "venv", ".git", "node_modules", "__pycache__", "build", "dist"}
SKIP_PATHS = ("migrations/versions",)


def _skipped(path: Path) -> bool:
    parts = path.parts
    if any(p in SKIP_DIRS or (p.startswith(".") and p not in (".", "..")) for p in parts):
        return True
    text = path.as_posix()
    return any(f"/{s}/" in f"/{text}/" for s in SKIP_PATHS)


def python_files(targets: list[Path]) -> Iterator[Path]:
    """Every ``.py`` file under ``targets`` (paths relative to the repository root), sorted."""
    for target in targets:
        rel = target.resolve().relative_to(ROOT)
        if (ROOT / rel).is_file():
            if rel.suffix == ".py" and not _skipped(rel):
                yield rel
            continue
        for path in sorted((ROOT / rel).rglob("*.py")):
            sub = path.relative_to(ROOT)
            if not _skipped(sub):
                yield sub


def parameters(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """The names ``node`` takes, a leading ``self`` / ``cls`` not counted."""
    args = node.args
    names = [a.arg for a in args.posonlyargs + args.args + args.kwonlyargs]
    names += [a.arg for a in (args.vararg, args.kwarg) if a is not None]
    return len(names) - (1 if names[:1] in (["self"], ["cls"]) else 0)


def offenders(path: Path) -> list[str]:
    """Lines describing every limit ``path`` (relative to the root) breaks."""
    text = (ROOT / path).read_text()
    found = []
    n_lines = len(text.splitlines())
    if n_lines > MAX_FILE_LINES:
        found.append(f"{path}: {n_lines} lines (limit {MAX_FILE_LINES})")
    for node in ast.walk(ast.parse(text, filename=str(path))):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            first = min([node.lineno] + [d.lineno for d in node.decorator_list])
            length = (node.end_lineno or node.lineno) - first + 1
            if length > MAX_FUNCTION_LINES:
                found.append(
                    f"{path}:{node.lineno}: function {node.name} is {length} lines "
                    f"(limit {MAX_FUNCTION_LINES})"
                )
            if parameters(node) > MAX_PARAMETERS:
                found.append(
                    f"{path}:{node.lineno}: function {node.name} takes {parameters(node)} "
                    f"parameters (limit {MAX_PARAMETERS})"
                )
    return found


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("paths", nargs="*", type=Path, help="files or folders (default: the repo)")
    args = p.parse_args(argv)
    missing = [t for t in args.paths if not t.exists()]
    if missing:
        p.error(f"no such file or folder: {', '.join(map(str, missing))}")
    outside = [t for t in args.paths if not t.resolve().is_relative_to(ROOT)]
    if outside:
        p.error(f"not inside the repository {ROOT}: {', '.join(map(str, outside))}")
    found = [line for path in python_files(args.paths or [ROOT]) for line in offenders(path)]
    for line in found:
        print(line)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
