"""The house rules that code can check: the layout by concern, a config that imports no
runtime, and functions short enough to read (docs/architecture.md)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "kale_spark"
MAX_FUNCTION_LINES = 60
CORE = {"__init__", "config", "schema", "prompts", "split", "hashing", "reasons"}


def test_config_imports_no_runtime() -> None:
    code = (
        "import sys, kale_spark.config\n"
        "print(','.join(m for m in ('pyspark', 'pandas', 'torch') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == ""


def test_top_level_modules_are_the_core_only() -> None:
    assert {p.stem for p in PACKAGE.glob("*.py")} == CORE


def test_every_package_says_what_it_owns() -> None:
    for init in PACKAGE.rglob("__init__.py"):
        assert ast.get_docstring(ast.parse(init.read_text())), init.relative_to(ROOT)


def _long_functions() -> list[str]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({lines})")
    return found


def test_no_function_is_over_60_lines() -> None:
    assert _long_functions() == []
