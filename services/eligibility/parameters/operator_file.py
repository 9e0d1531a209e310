"""The operator's parameter file: what the documents leave to the agency.

One YAML file the agency edits, mounted as configuration (see `operator-parameters.example.yaml`):
Norwegian amounts per level, the yearly Hermes maximum, the exact NIC deadline, ... An unset key
(absent or `null`) makes the criteria that need it `not_decidable`: never a guess. Unknown keys are
refused, so a typo cannot be ignored silently.

The keys themselves are scheme law, so each scheme declares its own (`OperatorKey` in its
`criteria.py`, listed in its `RULES.operator_keys`); `services.eligibility.schemes` collects them.
This module only knows how to read a file against such a list, and offers the parsers keys are
built from.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Generic, TypeVar, overload

from services.eligibility.parameters.values import (
    LimitReading,
    ParameterError,
    canonical_hash,
    parse_date,
    parse_int,
    parse_money,
    parse_percent,
    raw_repr,
    read_yaml,
)
from shared.money import Currency, Money

if TYPE_CHECKING:
    from services.eligibility.parameters.scheme_file import SchemeParameters

OPERATOR_FILE_ENV: Final = "ELIGIBILITY_OPERATOR_PARAMETERS_FILE"

T = TypeVar("T")


class OperatorParameterError(ParameterError):
    """The operator's parameter file is invalid: fix the named key in the named file."""


class OperatorParameterUnset(LookupError):
    """An operator parameter a criterion needs is not set (-> not_decidable)."""

    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(f"operator parameter {key!r} is not set")


@dataclass(frozen=True, slots=True, eq=False)
class OperatorKey(Generic[T]):
    """One key the operator may set: its dotted name, how to parse it, what it means.

    `check`, if given, validates a parsed value against the parameters of the scheme that declares
    the key (a value a document bounds, such as the S3 selection cap within 20-25) and returns the
    problem, or None. `limit` says how the rules apply the value where it is a limit.
    """

    key: str
    parse: Callable[[object], T]
    description: str
    check: Callable[[T, SchemeParameters], str | None] | None = None
    limit: LimitReading | None = None

    def __repr__(self) -> str:
        return f"OperatorKey({self.key!r})"


# --- parsers keys are built from ---------------------------------------------------------------------


def text_list(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(x, str) and x.strip() for x in value):
        raise ValueError("must be a list of non-empty texts")
    return tuple(x.strip() for x in value)


def yearly(parse_one: Callable[[object, str], T]) -> Callable[[object], Mapping[int, T]]:
    """A mapping of budget years (2000-2100) to values parsed by `parse_one(value, what)`."""

    def parse(value: object) -> Mapping[int, T]:
        if not isinstance(value, dict):
            raise ValueError("must map budget years (e.g. 2021) to values")
        out: dict[int, T] = {}
        for year, item in value.items():
            if isinstance(year, bool) or not isinstance(year, int) or not 2000 <= year <= 2100:
                raise ValueError(f"year {year!r} must be a whole year between 2000 and 2100")
            out[year] = parse_one(item, f"value for {year}")
        return out

    return parse


def money_of(currency: Currency) -> Callable[[object, str], Money]:
    return lambda value, what: parse_money(value, currency, what)


def money_in(currency: Currency) -> Callable[[object], Money]:
    return lambda value: parse_money(value, currency, "value")


def a_date(value: object) -> date:
    return parse_date(value, "value")


def positive_int(value: object) -> int:
    return parse_int(value, "value", minimum=1)


def positive_percent(value: object) -> Fraction:
    ratio = parse_percent(value, "value")
    if ratio <= 0:
        raise ValueError("must be more than 0")
    return ratio


# --- the file --------------------------------------------------------------------------------------


def registered_keys() -> Mapping[str, OperatorKey[Any]]:
    """Every key the schemes declare. Imported when first needed: the schemes' modules import this
    package (for `InForce` and `OperatorKey`), so this package cannot import them at load time."""
    from services.eligibility.schemes import OPERATOR_KEYS

    return OPERATOR_KEYS


def _flatten(data: Mapping[str, Any], keys: Mapping[str, OperatorKey[Any]], prefix: str = "") -> dict[str, object]:
    """Nested mappings to dotted keys, stopping at known keys (whose values may be mappings)."""
    out: dict[str, object] = {}
    for name, value in data.items():
        key = f"{prefix}{name}"
        if key not in keys and isinstance(value, dict):
            out.update(_flatten(value, keys, f"{key}."))
        else:
            out[key] = value
    return out


@dataclass(frozen=True)
class OperatorParameters:
    """What the operating agency set; unset keys are simply absent from `values`."""

    source: str = "(none)"
    values: Mapping[str, object] = field(default_factory=dict)
    content_hash: str = field(default_factory=lambda: canonical_hash({}))

    @classmethod
    def load(cls, path: str | Path, keys: Mapping[str, OperatorKey[Any]] | None = None) -> OperatorParameters:
        path = Path(path)
        return cls.from_mapping(read_yaml(path, OperatorParameterError), source=str(path), keys=keys)

    @classmethod
    def from_mapping(
        cls, raw: object, source: str = "(inline)", keys: Mapping[str, OperatorKey[Any]] | None = None
    ) -> OperatorParameters:
        """Parse `raw` against `keys` (default: every key the schemes declare)."""
        known = registered_keys() if keys is None else keys
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise OperatorParameterError(source, "(file)", "must be a mapping of operator keys")
        values: dict[str, object] = {}
        for key, value in _flatten(raw, known).items():
            spec = known.get(key)
            if spec is None:
                raise OperatorParameterError(source, key, f"unknown key; known keys: {', '.join(sorted(known))}")
            if value is None:
                continue
            try:
                values[key] = spec.parse(value)
            except ValueError as exc:
                raise OperatorParameterError(source, key, str(exc)) from None
        digest = canonical_hash({k: raw_repr(v) for k, v in values.items()})
        return cls(source=source, values=values, content_hash=digest)

    @overload
    def get(self, key: OperatorKey[T]) -> T: ...

    @overload
    def get(self, key: str) -> object: ...

    def get(self, key: OperatorKey[T] | str) -> T | object:
        """The value of a key; raises `OperatorParameterUnset` when the operator left it unset."""
        name = key if isinstance(key, str) else key.key
        if isinstance(key, str) and key not in registered_keys():
            raise KeyError(f"not an operator key: {key}")
        try:
            return self.values[name]
        except KeyError:
            raise OperatorParameterUnset(name) from None

    def hash_for(self, keys: Mapping[str, object] | set[str] | frozenset[str]) -> str:
        """A hash of the set values of `keys` (so a NIC change does not re-version VLAIO)."""
        return canonical_hash({k: raw_repr(v) for k, v in self.values.items() if k in keys})
