"""The values in force: every scheme's dated parameters plus the operator's values, on a day.

`ParameterStore.load(operator_file=...)` (or `ParameterStore.from_env()`, which reads the path
from `ELIGIBILITY_OPERATOR_PARAMETERS_FILE`) validates everything at start-up and raises
`SchemeParameterError` / `OperatorParameterError`, whose message names the file, the key and the
problem. `in_force(scheme, day)` is what every criterion reads.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from fractions import Fraction
from pathlib import Path
from typing import Any, Final, TypeVar, get_args
from zoneinfo import ZoneInfo

from services.eligibility.parameters.operator_file import (
    OPERATOR_FILE_ENV,
    OperatorKey,
    OperatorParameterError,
    OperatorParameters,
)
from services.eligibility.parameters.scheme_file import (
    UNDATED,
    DatedValue,
    SchemeParameterError,
    SchemeParameters,
)
from services.eligibility.parameters.values import ParamValue
from shared.events import SchemeId
from shared.money import Currency, Money

SCHEMES_DIR: Final = Path(__file__).resolve().parents[1] / "schemes"

_MISSING: Final = object()
_T = TypeVar("_T")


class ParameterNotInForce(LookupError):
    """No value of a scheme parameter is in force on the reference date."""

    def __init__(self, name: str, on: date) -> None:
        self.name = name
        self.on = on
        super().__init__(f"parameter {name!r} has no value in force on {on.isoformat()}")


@dataclass(frozen=True)
class InForce:
    """The parameters of one scheme in force on a reference date, plus the operator's values.

    This is what every criterion reads. Lookups raise `ParameterNotInForce` or
    `OperatorParameterUnset`; the criterion wrapper turns both into `not_decidable`.
    """

    scheme: SchemeParameters
    on: date
    values: Mapping[str, DatedValue | None]
    operator: OperatorParameters
    version: str
    operator_keys: frozenset[str] = frozenset()

    @property
    def zone(self) -> ZoneInfo:
        return _zone(self.scheme.time_zone)

    @property
    def currency(self) -> Currency:
        return self.scheme.currency

    def dated(self, name: str) -> DatedValue:
        found = self.values.get(name, _MISSING)
        if found is _MISSING:
            raise KeyError(f"{self.scheme.scheme} has no parameter {name!r}")
        if found is None:
            raise ParameterNotInForce(name, self.on)
        assert isinstance(found, DatedValue)
        return found

    def value(self, name: str) -> ParamValue:
        return self.dated(name).value

    def money(self, name: str) -> Money:
        return _typed(self.value(name), Money, name)

    def ratio(self, name: str) -> Fraction:
        return _typed(self.value(name), Fraction, name)

    def integer(self, name: str) -> int:
        return _typed(self.value(name), int, name)

    def day(self, name: str) -> date:
        return _typed(self.value(name), date, name)

    def flag(self, name: str) -> bool:
        return _typed(self.value(name), bool, name)

    def texts(self, name: str) -> tuple[str, ...]:
        return _typed(self.value(name), tuple, name)

    def mapping(self, name: str) -> Mapping[str, str]:
        value = self.value(name)
        if not isinstance(value, Mapping):
            raise TypeError(f"parameter {name!r} is not a mapping")
        return value

    def op(self, key: OperatorKey[_T]) -> _T:
        """The operator's value of `key`; raises `OperatorParameterUnset` while it is unset.

        A scheme reads only the keys it declares (its version hashes exactly those)."""
        if key.key not in self.operator_keys:
            raise KeyError(f"{self.scheme.scheme} reads operator key {key.key} without declaring it in RULES.operator_keys")
        return self.operator.get(key)


def _typed(value: object, kind: type[_T], name: str) -> _T:
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise TypeError(f"parameter {name!r} is not a {kind.__name__}")
    return value


_ZONES: dict[str, ZoneInfo] = {}


def _zone(name: str) -> ZoneInfo:
    zone = _ZONES.get(name)
    if zone is None:
        zone = _ZONES[name] = ZoneInfo(name)
    return zone


def declared_keys() -> Mapping[str, Sequence[OperatorKey[Any]]]:
    """The operator keys each scheme declares (imported when first needed, as in `operator_file`)."""
    from services.eligibility.schemes import SCHEMES

    return {scheme: rules.operator_keys for scheme, rules in SCHEMES.items()}


class ParameterStore:
    """All schemes' dated parameters plus the operator's values; immutable once built.

    Build it once at start-up (`load` / `from_env`); `in_force(scheme, day)` is memoised. The
    version of a scheme's values covers its parameter file and the operator values of the keys the
    scheme declares, so setting a NIC amount does not re-version a VLAIO decision.
    """

    def __init__(
        self,
        schemes: Mapping[str, SchemeParameters],
        operator: OperatorParameters | None = None,
        keys: Mapping[str, Sequence[OperatorKey[Any]]] | None = None,
    ) -> None:
        self._schemes: dict[str, SchemeParameters] = dict(schemes)
        self._operator = operator or OperatorParameters()
        self._keys = dict(declared_keys() if keys is None else keys)
        self._cache: dict[tuple[str, date], InForce] = {}
        self._check_operator_against_schemes()

    @classmethod
    def load(
        cls,
        schemes_dir: str | Path | None = None,
        operator_file: str | Path | None = None,
    ) -> ParameterStore:
        """Load every `schemes/*/parameters.yaml` and, if given, the operator file."""
        base = Path(schemes_dir) if schemes_dir is not None else SCHEMES_DIR
        schemes: dict[str, SchemeParameters] = {}
        for path in sorted(base.glob("*/parameters.yaml")):
            loaded = SchemeParameters.load(path)
            if loaded.scheme in schemes:
                raise SchemeParameterError(path, "scheme", f"{loaded.scheme} is defined twice")
            schemes[loaded.scheme] = loaded
        missing = sorted(set(get_args(SchemeId)) - set(schemes))
        if missing:
            raise SchemeParameterError(base, "(schemes)", f"no parameters.yaml for {', '.join(missing)}")
        operator = OperatorParameters.load(operator_file) if operator_file is not None else OperatorParameters()
        return cls(schemes, operator)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ParameterStore:
        """Like `load`, taking the operator file from `ELIGIBILITY_OPERATOR_PARAMETERS_FILE` (optional)."""
        environ = os.environ if env is None else env
        path = environ.get(OPERATOR_FILE_ENV) or None
        return cls.load(operator_file=path)

    @property
    def operator(self) -> OperatorParameters:
        return self._operator

    def with_operator(self, operator: OperatorParameters) -> ParameterStore:
        """The same scheme parameters with other operator values (e.g. a what-if proposal)."""
        return ParameterStore(self._schemes, operator, self._keys)

    def with_scheme(self, parameters: SchemeParameters) -> ParameterStore:
        """The same store with one scheme's parameters replaced (e.g. a proposed dated change)."""
        return ParameterStore({**self._schemes, parameters.scheme: parameters}, self._operator, self._keys)

    def scheme(self, scheme: str) -> SchemeParameters:
        return self._schemes[scheme]

    def in_force(self, scheme: str, on: date) -> InForce:
        cached = self._cache.get((scheme, on))
        if cached is not None:
            return cached
        params = self._schemes[scheme]
        values = {name: p.at(on) for name, p in params.parameters.items()}
        latest = max((v.valid_from for v in values.values() if v is not None), default=UNDATED)
        own_keys = {k.key for k in self._keys.get(scheme, ())}
        digest = hashlib.sha256(f"{params.content_hash}:{self._operator.hash_for(own_keys)}".encode()).hexdigest()
        version = f"{scheme}@{'undated' if latest == UNDATED else latest.isoformat()}#{digest[:12]}"
        result = InForce(
            scheme=params, on=on, values=values, operator=self._operator, version=version, operator_keys=frozenset(own_keys)
        )
        if len(self._cache) < 100_000:
            self._cache[(scheme, on)] = result
        return result

    def _check_operator_against_schemes(self) -> None:
        """Operator values a document bounds, checked by the declaring scheme against its parameters."""
        for scheme, keys in self._keys.items():
            params = self._schemes.get(scheme)
            if params is None:
                continue
            for key in keys:
                value = self._operator.values.get(key.key, _MISSING)
                if key.check is None or value is _MISSING:
                    continue
                problem = key.check(value, params)
                if problem is not None:
                    raise OperatorParameterError(self._operator.source, key.key, problem)
