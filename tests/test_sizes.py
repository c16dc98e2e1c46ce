"""STYLE.md's sizes, held: no module of ``circuits`` or ``hooked_bimt`` over 400 lines, no function or method over
60 (from its ``def`` line to its last line, docstring included, decorators not)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("circuits", "hooked_bimt")
MODULE_LINES, FUNCTION_LINES = 400, 60


def _modules() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def test_the_packages_are_walked():
    names = {p.relative_to(ROOT).as_posix() for p in _modules()}
    assert {"hooked_bimt/training.py", "circuits/acdc/loop.py"} <= names and len(names) > 50


def test_no_module_over_400_lines():
    long = {p.relative_to(ROOT).as_posix(): n for p in _modules() if (n := len(p.read_text().splitlines())) > MODULE_LINES}
    assert long == {}, f"modules over {MODULE_LINES} lines: {long}"


def test_no_function_over_60_lines():
    long = {}
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > FUNCTION_LINES:
                    long[f"{path.relative_to(ROOT).as_posix()}:{node.lineno} {node.name}"] = n
    assert long == {}, f"functions over {FUNCTION_LINES} lines: {long}"
