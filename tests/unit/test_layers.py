"""The seedwork imports no service: arrows in the import graph run from services to shared, never back.

`shared/` is what every service imports (contracts, delivery, runtime, settings). A module of it
that imported a service, even inside a function, would make the seedwork depend on the services it
serves; the generators that describe the whole system live in `tools/` for that reason.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
UPWARD = ("services", "tools")


def upward_imports(source: str) -> list[tuple[int, str]]:
    """(line, module) of every import of a service or a tool, wherever it sits in the module."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found += [(node.lineno, name) for name in names if name.split(".")[0] in UPWARD]
    return found


def test_the_check_sees_imports_at_any_depth() -> None:
    source = (
        "import json\n"
        "from shared.events import Event\n"
        "def build():\n"
        "    from services.budget.app import build\n"
        "    import tools.asyncapi as a\n"
        "    from servicesx import y\n"
    )
    assert upward_imports(source) == [(4, "services.budget.app"), (5, "tools.asyncapi")]


def test_shared_imports_no_service_and_no_tool() -> None:
    modules = sorted((ROOT / "shared").rglob("*.py"))
    assert modules, "no module under shared/"
    offending = [
        f"{path.relative_to(ROOT)}:{line}: imports {name}"
        for path in modules
        for line, name in upward_imports(path.read_text(encoding="utf-8"))
    ]
    assert not offending, "shared/ is seedwork and must not import services or tools:\n" + "\n".join(offending)
