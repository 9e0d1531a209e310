"""Reading the schemes' `cases.yaml`: shorthand a scheme officer can write, expanded to contracts.

Shorthand: an amount is written "EUR 500000.00" (major units, exact); it becomes Money. Each case's
`input` is deep-merged over the file's `defaults` (mappings merge, lists and scalars replace), and
its `operator` over the file's `operator` (null unsets a key).

A case that tests a limit says so: `limit: {name: yearly_ceiling, side: outside}` (or a list of such), where `name` is a
scheme parameter or operator key with a `limit` reading and `side` is `at` (exactly the limit),
`inside` (the allowed side: under a maximum, over a minimum) or `outside` (beyond it).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

from services.eligibility.schemes import SCHEMES, scheme_dir
from shared.events import Application
from shared.money import MINOR_UNITS, Money

AMOUNT = re.compile(r"^(EUR|SEK|NOK) (\d[\d,_]*(?:\.\d{1,2})?)$")


def money_of(text: str) -> Money:
    match = AMOUNT.match(text)
    if match is None:
        raise ValueError(f"not an amount: {text!r}")
    currency, number = match.group(1), match.group(2).replace(",", "").replace("_", "")
    minor = Decimal(number) * MINOR_UNITS[currency]
    assert minor == minor.to_integral_value()
    return Money(amount_minor=int(minor), currency=currency)  # type: ignore[arg-type]  # pydantic checks the currency


def expand(value: Any) -> Any:
    """Amount shorthand to Money dicts, recursively."""
    if isinstance(value, str) and AMOUNT.match(value):
        return money_of(value).model_dump()
    if isinstance(value, dict):
        return {k: expand(v) for k, v in value.items()}
    if isinstance(value, list):
        return [expand(v) for v in value]
    return value


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


@dataclass(frozen=True)
class Case:
    scheme: str
    name: str
    source: str
    application: Application
    operator: dict[str, Any]
    expected: dict[str, Any]
    limits: tuple[dict[str, str], ...] = ()


def load_cases(scheme: str) -> Iterator[Case]:
    path = scheme_dir(scheme) / "cases.yaml"
    doc = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    assert doc["scheme"] == scheme, f"{path}: scheme {doc['scheme']!r} is not {scheme!r}"
    defaults = doc.get("defaults", {})
    base_operator = doc.get("operator") or {}
    names: set[str] = set()
    for raw in doc["cases"]:
        name = raw["name"]
        assert name not in names, f"{path}: case {name!r} twice"
        names.add(name)
        data = expand(deep_merge(defaults, raw.get("input") or {}))
        data["scheme"] = scheme
        yield Case(
            scheme=scheme,
            name=name,
            source=f"{path}#{name}",
            application=Application.model_validate(data),
            operator=deep_merge(base_operator, raw.get("operator") or {}),
            expected=raw["expected"],
            limits=tuple(raw["limit"] if isinstance(raw.get("limit"), list) else [raw["limit"]] if raw.get("limit") else []),
        )


def all_cases() -> Iterator[Case]:
    for scheme in SCHEMES:
        yield from load_cases(scheme)
