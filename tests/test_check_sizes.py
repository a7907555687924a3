"""scripts/check_sizes.py: the parameter rule counts every name a function takes, but a
method's leading ``self`` / ``cls``."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("check_sizes", ROOT / "scripts" / "check_sizes.py")
check_sizes = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check_sizes)


def _count(source: str) -> int:
    node = next(n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.FunctionDef))
    return check_sizes.parameters(node)


def test_parameters_count_every_name_but_a_leading_self_or_cls() -> None:
    assert _count("def f(a, b, /, c, *args, d, e=1, **kw): pass") == 7
    assert _count("class A:\n    def m(self, a, b): pass") == 2
    assert _count("class A:\n    @classmethod\n    def m(cls, a): pass") == 1
    assert _count("def f(a, self): pass") == 2  # only a leading self is the method's
    assert _count("def f(): pass") == 0
    assert check_sizes.MAX_PARAMETERS == 8
