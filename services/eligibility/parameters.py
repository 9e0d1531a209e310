"""Dated scheme parameters and operator-set parameters, loaded from YAML.

Two sources feed the rules:

* **Scheme parameters** (`schemes/<scheme>/parameters.yaml`): every figure a source document
  states, OpenFisca style: `values: {2020-06-11: {value: ...}}` with a `unit:` and a
  `reference:` naming the seed file. A value is in force from its date until the next dated
  value. The key `undated` marks a value the document states without saying since when: it is in
  force from before any date the system decides on, until the first dated value. When a rule
  changes, add a dated value; never edit the past.
* **Operator parameters** (one YAML file the agency edits, mounted as configuration; see
  `operator-parameters.example.yaml`): what the documents leave to the agency (Norwegian amounts
  per level, the yearly Hermes maximum, the exact NIC deadline, ...). An unset key (absent or
  `null`) makes the criteria that need it `not_decidable`: never a guess.

Money is integer minor units (`shared.money.Money`), percentages are exact `Fraction`s; a float
anywhere in a parameter file is refused, because a binary float cannot hold a decimal figure
exactly.

`ParameterStore.load(operator_file=...)` (or `ParameterStore.from_env()`, which reads the path
from `ELIGIBILITY_OPERATOR_PARAMETERS_FILE`) validates everything at start-up and raises
`SchemeParameterError` / `OperatorParameterError`, whose message names the file, the key and the
problem.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from pathlib import Path
from typing import Any, Final, TypeVar, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from shared.events import SchemeId
from shared.money import MINOR_UNITS, Currency, Money

SCHEMES_DIR: Final = Path(__file__).parent / "schemes"
OPERATOR_FILE_ENV: Final = "ELIGIBILITY_OPERATOR_PARAMETERS_FILE"
UNDATED: Final = date.min
"""Valid-from of a value whose source states no start date (YAML key `undated`)."""

ParamValue = Money | Fraction | int | bool | date | datetime | str | tuple[str, ...] | Mapping[str, str]
UNITS: Final = (
    "currency",
    "percent",
    "years",
    "year",
    "pages",
    "count",
    "date",
    "datetime",
    "bool",
    "text",
    "list",
    "mapping",
)


# --- errors ----------------------------------------------------------------------------------


class ParameterError(ValueError):
    """A parameter file is wrong; the message names the file, the key and the problem."""

    def __init__(self, file: str | Path, key: str, problem: str) -> None:
        self.file = str(file)
        self.key = key
        self.problem = problem
        super().__init__(f"{self.file}: {key}: {problem}")


class SchemeParameterError(ParameterError):
    """A scheme's `parameters.yaml` is invalid (a defect in the shipped rules)."""


class OperatorParameterError(ParameterError):
    """The operator's parameter file is invalid: fix the named key in the named file."""


class ParameterNotInForce(LookupError):
    """No value of a scheme parameter is in force on the reference date."""

    def __init__(self, name: str, on: date) -> None:
        self.name = name
        self.on = on
        super().__init__(f"parameter {name!r} has no value in force on {on.isoformat()}")


class OperatorParameterUnset(LookupError):
    """An operator parameter a criterion needs is not set (-> not_decidable)."""

    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(f"operator parameter {key!r} is not set")


# --- value parsing (shared by both files) ----------------------------------------------------


def _no_float(value: object, what: str) -> None:
    if isinstance(value, float):
        raise ValueError(f"{what} {value!r} is a float; write it as an integer or a quoted decimal string")


def parse_decimal(value: object, what: str = "number") -> Decimal:
    """An exact decimal from an int or a decimal string (never a float)."""
    _no_float(value, what)
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"{what} must be an integer or a decimal string, got {type(value).__name__}")
    try:
        parsed = Decimal(str(value).replace("_", "").strip())
    except InvalidOperation:
        raise ValueError(f"{what} {value!r} is not a number") from None
    if not parsed.is_finite():
        raise ValueError(f"{what} {value!r} is not a finite number")
    return parsed


def parse_money(value: object, currency: Currency, what: str = "amount") -> Money:
    """Major units (e.g. 500000 or "500000.00") to `Money` in exact minor units."""
    amount = parse_decimal(value, what)
    minor = amount * MINOR_UNITS[currency]
    if minor != minor.to_integral_value():
        raise ValueError(f"{what} {value!r} has more decimals than {currency} minor units allow")
    if minor < 0:
        raise ValueError(f"{what} {value!r} is negative")
    return Money(amount_minor=int(minor), currency=currency)


def parse_percent(value: object, what: str = "percent") -> Fraction:
    """A percentage (e.g. 50 or "12.5") as an exact ratio (Fraction(1, 2) for 50)."""
    ratio = Fraction(parse_decimal(value, what)) / 100
    if ratio < 0:
        raise ValueError(f"{what} {value!r} is negative")
    return ratio


def parse_int(value: object, what: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{what} must be a whole number, got {value!r}")
    if value < minimum:
        raise ValueError(f"{what} must be at least {minimum}, got {value}")
    return value


def parse_date(value: object, what: str = "date") -> date:
    if isinstance(value, datetime):
        raise ValueError(f"{what} must be a date (YYYY-MM-DD), not a date-time")
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise ValueError(f"{what} must be a date (YYYY-MM-DD), got {value!r}")


def parse_datetime(value: object, what: str = "date-time") -> datetime:
    parsed: datetime | None = None
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            parsed = None
    if parsed is None:
        raise ValueError(f"{what} must be an ISO date-time with offset, got {value!r}")
    if parsed.tzinfo is None:
        raise ValueError(f"{what} {value!r} has no time zone offset")
    return parsed


def _parse_value(unit: str, raw: object, currency: Currency | None) -> ParamValue:
    match unit:
        case "currency":
            if currency is None:
                raise ValueError("a currency parameter needs the file's top-level `currency:`")
            return parse_money(raw, currency, "value")
        case "percent":
            return parse_percent(raw, "value")
        case "years" | "pages" | "count":
            return parse_int(raw, "value")
        case "year":
            return parse_int(raw, "value", minimum=1900)
        case "date":
            return parse_date(raw, "value")
        case "datetime":
            return parse_datetime(raw, "value")
        case "bool":
            if not isinstance(raw, bool):
                raise ValueError(f"value must be true or false, got {raw!r}")
            return raw
        case "text":
            if not isinstance(raw, str) or not raw.strip():
                raise ValueError(f"value must be a non-empty text, got {raw!r}")
            return raw
        case "list":
            if not isinstance(raw, list) or not all(isinstance(x, str) and x for x in raw):
                raise ValueError("value must be a list of non-empty texts")
            return tuple(raw)
        case "mapping":
            if not isinstance(raw, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in raw.items()):
                raise ValueError("value must be a mapping of text to text")
            return dict(raw)
    raise ValueError(f"unknown unit {unit!r}; use one of {', '.join(UNITS)}")


def _read_yaml(path: Path, error: type[ParameterError]) -> object:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise error(path, "(file)", f"cannot be read: {exc.strerror or exc}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise error(path, "(file)", f"is not valid YAML: {exc}") from None


def _stringify_keys(data: object) -> object:
    if isinstance(data, dict):
        return {str(k): _stringify_keys(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_stringify_keys(v) for v in data]
    return data


def _canonical_hash(data: object) -> str:
    """SHA-256 of a canonical JSON form (sorted keys, dates as ISO text)."""
    canonical = json.dumps(_stringify_keys(data), sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


# --- scheme parameters -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DatedValue:
    valid_from: date
    value: ParamValue


@dataclass(frozen=True, slots=True)
class Parameter:
    """One named parameter with its dated values, unit, and the document it comes from."""

    name: str
    unit: str
    reference: str
    description: str
    values: tuple[DatedValue, ...]

    def at(self, on: date) -> DatedValue | None:
        """The value in force on `on`: the latest value whose valid-from is not after `on`."""
        index = bisect.bisect_right([v.valid_from for v in self.values], on)
        return self.values[index - 1] if index else None


@dataclass(frozen=True)
class SchemeParameters:
    """The dated parameters of one scheme, as loaded from its `parameters.yaml`."""

    scheme: SchemeId
    time_zone: str
    currency: Currency
    programme: str
    parameters: Mapping[str, Parameter]
    content_hash: str
    source: str

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)

    @classmethod
    def load(cls, path: Path) -> SchemeParameters:
        raw = _read_yaml(path, SchemeParameterError)
        return cls.from_mapping(raw, source=str(path))

    @classmethod
    def from_mapping(cls, raw: object, source: str) -> SchemeParameters:
        def fail(key: str, problem: str) -> SchemeParameterError:
            return SchemeParameterError(source, key, problem)

        if not isinstance(raw, dict):
            raise fail("(file)", "must be a mapping with scheme, time_zone, currency, programme, parameters")
        scheme = raw.get("scheme")
        if scheme not in get_args(SchemeId):
            raise fail("scheme", f"unknown scheme id {scheme!r}")
        time_zone = raw.get("time_zone")
        try:
            ZoneInfo(str(time_zone))
        except (ZoneInfoNotFoundError, ValueError):
            raise fail("time_zone", f"unknown IANA time zone {time_zone!r}") from None
        currency = raw.get("currency")
        if currency not in MINOR_UNITS:
            raise fail("currency", f"unknown currency {currency!r}")
        programme = raw.get("programme")
        if not isinstance(programme, str) or not programme:
            raise fail("programme", "must name the budget programme")
        params_raw = raw.get("parameters")
        if not isinstance(params_raw, dict) or not params_raw:
            raise fail("parameters", "must be a non-empty mapping")
        parameters: dict[str, Parameter] = {}
        for name, spec in params_raw.items():
            key = f"parameters.{name}"
            if not isinstance(spec, dict):
                raise fail(key, "must be a mapping with unit, reference, values")
            unit = spec.get("unit")
            if unit not in UNITS:
                raise fail(f"{key}.unit", f"unknown unit {unit!r}; use one of {', '.join(UNITS)}")
            reference = spec.get("reference")
            if not isinstance(reference, str) or not reference.strip():
                raise fail(f"{key}.reference", "must name the source document (seed file)")
            values_raw = spec.get("values")
            if not isinstance(values_raw, dict) or not values_raw:
                raise fail(f"{key}.values", "must map valid-from dates to {value: ...}")
            values: list[DatedValue] = []
            for when, entry in values_raw.items():
                vkey = f"{key}.values.{when}"
                try:
                    valid_from = UNDATED if when == "undated" else parse_date(when, "valid-from")
                except ValueError as exc:
                    raise fail(vkey, str(exc)) from None
                if not isinstance(entry, dict) or "value" not in entry:
                    raise fail(vkey, "must be a mapping {value: ...}")
                try:
                    values.append(DatedValue(valid_from, _parse_value(unit, entry["value"], currency)))
                except ValueError as exc:
                    raise fail(f"{vkey}.value", str(exc)) from None
            values.sort(key=lambda v: v.valid_from)
            parameters[str(name)] = Parameter(
                name=str(name),
                unit=unit,
                reference=reference,
                description=str(spec.get("description", "")),
                values=tuple(values),
            )
        return cls(
            scheme=scheme,
            time_zone=str(time_zone),
            currency=currency,
            programme=programme,
            parameters=parameters,
            content_hash=_canonical_hash(raw),
            source=source,
        )


# --- operator parameters ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OperatorKey:
    """One key the operator may set: how to parse it and what it means."""

    key: str
    parse: Callable[[object], object]
    description: str


def _text_list(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(x, str) and x.strip() for x in value):
        raise ValueError("must be a list of non-empty texts (organisation names or register numbers)")
    return tuple(x.strip() for x in value)


def _yearly(parse_one: Callable[[object, str], object]) -> Callable[[object], Mapping[int, object]]:
    def parse(value: object) -> Mapping[int, object]:
        if not isinstance(value, dict):
            raise ValueError("must map budget years (e.g. 2021) to values")
        out: dict[int, object] = {}
        for year, item in value.items():
            if isinstance(year, bool) or not isinstance(year, int) or not 2000 <= year <= 2100:
                raise ValueError(f"year {year!r} must be a whole year between 2000 and 2100")
            out[year] = parse_one(item, f"value for {year}")
        return out

    return parse


def _money_of(currency: Currency) -> Callable[[object, str], Money]:
    return lambda value, what: parse_money(value, currency, what)


def _nic_deadline(value: object, what: str) -> date:
    """The document says only "midten av september" (mid-September): the day must be in September."""
    day = parse_date(value, what)
    if day.month != 9:
        raise ValueError(f"{what} {day.isoformat()} is not in September (the document: mid-September every year)")
    return day


def _positive_int(value: object) -> int:
    return parse_int(value, "value", minimum=1)


def _positive_percent(value: object) -> Fraction:
    ratio = parse_percent(value, "value")
    if ratio <= 0:
        raise ValueError("must be more than 0")
    return ratio


NIC_LEVELS: Final = ("arena", "arena-pro", "gce")

OPERATOR_KEYS: Final[dict[str, OperatorKey]] = {
    k.key: k
    for k in [
        OperatorKey(
            "vlaio.recognised_spearhead_clusters",
            _text_list,
            "Recognised spearhead clusters (organisation names or register numbers): coordination support "
            "and the innovation-projects route are open only to them (000, 001).",
        ),
        OperatorKey(
            "vlaio.hermes_yearly_maximum_eur",
            _yearly(_money_of("EUR")),
            "Cluster pact: maximum Hermes earmark per budget year, EUR (001: 'jaarlijks bepaald').",
        ),
        OperatorKey(
            "ttc.innovation_fund_matching_share_percent",
            _positive_percent,
            "Innovation fund: secured matching funding must reach at least this percent of the grant "
            "(002 says only 'evenredige financiering').",
        ),
        OperatorKey(
            "s3.platform_selection_cap",
            _positive_int,
            "S3 step 1: how many cluster organisations are selected (003: 20-25; validated against that range).",
        ),
        OperatorKey(
            "s3.financing_application_deadline",
            lambda v: parse_date(v, "value"),
            "S3 step 2 (autumn 2018, separate call): last day to apply, Europe/Stockholm (not in 003).",
        ),
        OperatorKey(
            "nic.application_deadline",
            _yearly(_nic_deadline),
            "NIC: the exact application deadline per year, a day in September, Europe/Oslo (004: mid-September).",
        ),
        OperatorKey("nic.selection_cap", _positive_int, "NIC: how many new clusters a round selects (not in 004)."),
        *[
            OperatorKey(
                f"nic.levels.{level}.yearly_maximum_nok",
                lambda v: parse_money(v, "NOK", "value"),
                f"NIC level {level}: largest grant per budget year, NOK (not in 004).",
            )
            for level in NIC_LEVELS
        ],
        *[
            OperatorKey(
                f"nic.levels.{level}.max_years",
                _positive_int,
                f"NIC level {level}: longest support, in budget years (not in 004).",
            )
            for level in NIC_LEVELS
        ],
    ]
}


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, object]:
    """Nested mappings to dotted keys, stopping at known keys (whose values may be mappings)."""
    out: dict[str, object] = {}
    for name, value in data.items():
        key = f"{prefix}{name}"
        if key not in OPERATOR_KEYS and isinstance(value, dict):
            out.update(_flatten(value, f"{key}."))
        else:
            out[key] = value
    return out


@dataclass(frozen=True)
class OperatorParameters:
    """What the operating agency set; unset keys are simply absent from `values`."""

    source: str = "(none)"
    values: Mapping[str, object] = field(default_factory=dict)
    content_hash: str = field(default_factory=lambda: _canonical_hash({}))

    @classmethod
    def load(cls, path: str | Path) -> OperatorParameters:
        path = Path(path)
        return cls.from_mapping(_read_yaml(path, OperatorParameterError), source=str(path))

    @classmethod
    def from_mapping(cls, raw: object, source: str = "(inline)") -> OperatorParameters:
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise OperatorParameterError(source, "(file)", "must be a mapping of operator keys")
        values: dict[str, object] = {}
        for key, value in _flatten(raw).items():
            spec = OPERATOR_KEYS.get(key)
            if spec is None:
                known = ", ".join(sorted(OPERATOR_KEYS))
                raise OperatorParameterError(source, key, f"unknown key; known keys: {known}")
            if value is None:
                continue
            try:
                values[key] = spec.parse(value)
            except ValueError as exc:
                raise OperatorParameterError(source, key, str(exc)) from None
        digest = _canonical_hash({k: raw_repr(v) for k, v in values.items()})
        return cls(source=source, values=values, content_hash=digest)

    def get(self, key: str) -> object:
        """The value of a known key; raises `OperatorParameterUnset` when the operator left it unset."""
        if key not in OPERATOR_KEYS:
            raise KeyError(f"not an operator key: {key}")
        try:
            return self.values[key]
        except KeyError:
            raise OperatorParameterUnset(key) from None

    def hash_for(self, prefix: str) -> str:
        """A hash of the set values under `prefix` (so a NIC change does not re-version VLAIO)."""
        return _canonical_hash({k: raw_repr(v) for k, v in self.values.items() if k.startswith(prefix)})


def raw_repr(value: object) -> object:
    """A JSON-able, exact representation of a parsed value (for hashing and reports)."""
    if isinstance(value, Money):
        return f"{value.currency} {value.amount_minor}"
    if isinstance(value, Fraction):
        return f"{value.numerator}/{value.denominator}"
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): raw_repr(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [raw_repr(v) for v in value]
    return value


# --- values in force on a date ---------------------------------------------------------------

_MISSING: Final = object()
_T = TypeVar("_T")


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

    def op(self, key: str) -> object:
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


_FAMILY_RE: Final = re.compile(r"^([a-z0-9]+)\.")


class ParameterStore:
    """All schemes' dated parameters plus the operator's values; immutable once built.

    Build it once at start-up (`load` / `from_env`); `in_force(scheme, day)` is memoised.
    """

    def __init__(self, schemes: Mapping[str, SchemeParameters], operator: OperatorParameters | None = None) -> None:
        self._schemes: dict[str, SchemeParameters] = dict(schemes)
        self._operator = operator or OperatorParameters()
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
        return ParameterStore(self._schemes, operator)

    def with_scheme(self, parameters: SchemeParameters) -> ParameterStore:
        """The same store with one scheme's parameters replaced (e.g. a proposed dated change)."""
        return ParameterStore({**self._schemes, parameters.scheme: parameters}, self._operator)

    def scheme(self, scheme: str) -> SchemeParameters:
        return self._schemes[scheme]

    def in_force(self, scheme: str, on: date) -> InForce:
        cached = self._cache.get((scheme, on))
        if cached is not None:
            return cached
        params = self._schemes[scheme]
        values = {name: p.at(on) for name, p in params.parameters.items()}
        latest = max((v.valid_from for v in values.values() if v is not None), default=UNDATED)
        family = _FAMILY_RE.match(scheme)
        prefix = f"{family.group(1)}." if family else scheme
        digest = hashlib.sha256(f"{params.content_hash}:{self._operator.hash_for(prefix)}".encode()).hexdigest()
        version = f"{scheme}@{'undated' if latest == UNDATED else latest.isoformat()}#{digest[:12]}"
        result = InForce(scheme=params, on=on, values=values, operator=self._operator, version=version)
        if len(self._cache) < 100_000:
            self._cache[(scheme, on)] = result
        return result

    def _check_operator_against_schemes(self) -> None:
        """Operator values that a document bounds: checked against the scheme parameters."""
        cap = self._operator.values.get("s3.platform_selection_cap")
        s3 = self._schemes.get("s3.platform")
        if isinstance(cap, int) and s3 is not None:
            low_p, high_p = s3.parameters.get("selection_count_min"), s3.parameters.get("selection_count_max")
            if low_p is not None and high_p is not None:
                # the widest range any dated value allows (the operator's cap is not dated)
                low = min(v.value for v in low_p.values if isinstance(v.value, int))
                high = max(v.value for v in high_p.values if isinstance(v.value, int))
                if not low <= cap <= high:
                    raise OperatorParameterError(
                        self._operator.source,
                        "s3.platform_selection_cap",
                        f"{cap} is outside the range the document gives ({low}-{high}, seed 003)",
                    )
