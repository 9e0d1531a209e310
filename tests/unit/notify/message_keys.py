"""Every message key notify may have to explain, collected so that none can be missed silently.

Two sources, each checking the other:

* A static scan (AST) of the eligibility schemes' code: the key arguments of every
  `passed/failed/undecidable/Undecidable/Verdict/at_most(...)` call (EMITTERS) and every
  `message_key=` keyword. A
  literal is a key; an f-string with one leading placeholder (`f"{prefix}.funding.missing"`) is a
  pattern `*.funding.missing`; a variable is accepted only if it is on PASS_THROUGH (a key made
  elsewhere and handed on). Anything else is reported as unresolved, and the test fails.
* Every scheme's `cases.yaml`, run through `evaluate`: the keys actually emitted. Each must be
  matched by the scan (else the scan is missing something, and the test fails).

Budget refusal keys: every string literal `budget.<...>` in services/budget. Intake rejection
types: pydantic's plus intake's own.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
SCHEMES_DIR = ROOT / "services" / "eligibility" / "schemes"
BUDGET_DIR = ROOT / "services" / "budget"

#: The functions that emit a message key, and the positions of the keys among their arguments.
EMITTERS = {"passed": (0,), "failed": (0,), "undecidable": (0,), "Undecidable": (0,), "Verdict": (1,), "at_most": (3, 4)}
#: (file, expression) that hand on a key produced (and scanned) elsewhere: the emitters themselves.
PASS_THROUGH = {
    ("services/eligibility/schemes/common.py", "exc.message_key"),
    ("services/eligibility/schemes/common.py", "verdict.message_key"),
    ("services/eligibility/schemes/common.py", "key"),  # def passed(key, ...): return Verdict("passed", key, ...)
    ("services/eligibility/schemes/common.py", "within"),  # def at_most(..., within, exceeded): passed(within, ...)
    ("services/eligibility/schemes/common.py", "exceeded"),
}
KEY = re.compile(r"^[a-z0-9_]+(\.[a-z0-9_]+)+$")
BUDGET_KEY = re.compile(r"^budget\.[a-z0-9_]+(\.[a-z0-9_]+)*$")

INTAKE_OWN_TYPES = (
    "money_negative",
    "money_fractional",
    "money_type",
    "json_invalid",
    "object_expected",
    "application_id_conflict",
)
#: Pydantic error types an Application can produce; each has its own text (others get the generic "*").
INTAKE_PYDANTIC_TYPES = (
    "missing",
    "extra_forbidden",
    "literal_error",
    "string_type",
    "string_too_short",
    "string_too_long",
    "string_pattern_mismatch",
    "int_type",
    "int_parsing",
    "int_from_float",
    "bool_type",
    "bool_parsing",
    "list_type",
    "dict_type",
    "model_type",
    "model_attributes_type",
    "too_short",
    "too_long",
    "greater_than_equal",
    "less_than_equal",
    "date_type",
    "date_parsing",
    "date_from_datetime_parsing",
    "datetime_type",
    "datetime_parsing",
    "datetime_from_date_parsing",
    "timezone_aware",
    "value_error",
)


@dataclass
class Scan:
    keys: dict[str, str] = field(default_factory=dict)  # key -> where
    patterns: dict[str, str] = field(default_factory=dict)  # "*.suffix" -> where
    unresolved: list[str] = field(default_factory=list)

    def covers(self, key: str) -> bool:
        return key in self.keys or any(key.endswith(p[1:]) for p in self.patterns)


def _emitted(node: ast.Call) -> Iterator[ast.expr]:
    func = node.func
    name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
    for index in EMITTERS.get(name, ()):
        if len(node.args) > index:
            yield node.args[index]
    for keyword in node.keywords:
        if keyword.arg == "message_key":
            yield keyword.value


def scan_schemes(directory: Path = SCHEMES_DIR) -> Scan:
    scan = Scan()
    for path in sorted(directory.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if not isinstance(node, ast.Call):
                continue
            for arg in _emitted(node):
                relative = str(path.relative_to(ROOT))
                where = f"{relative}:{arg.lineno}"
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and KEY.match(arg.value):
                    scan.keys.setdefault(arg.value, where)
                elif (
                    isinstance(arg, ast.JoinedStr)
                    and isinstance(arg.values[0], ast.FormattedValue)
                    and all(isinstance(v, ast.Constant) for v in arg.values[1:])
                    # (ignore below) all Constants, checked above
                    and KEY.match("x" + "".join(str(v.value) for v in arg.values[1:]))  # type: ignore[attr-defined]
                ):
                    # (ignore below) all Constants, checked above
                    suffix = "".join(str(v.value) for v in arg.values[1:])  # type: ignore[attr-defined]
                    scan.patterns.setdefault("*" + suffix, where)
                elif (relative, ast.unparse(arg)) not in PASS_THROUGH:
                    scan.unresolved.append(f"{where}: {ast.unparse(arg)}")
    return scan


def budget_keys(directory: Path = BUDGET_DIR) -> set[str]:
    keys: set[str] = set()
    for path in sorted(directory.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and BUDGET_KEY.match(node.value):
                keys.add(node.value)
    return keys
