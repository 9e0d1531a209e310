"""Parameter values: exact parsing of the figures both parameter files hold, and the errors.

Money is integer minor units (`shared.money.Money`), percentages are exact `Fraction`s; a float is
refused wherever a figure is read, because a binary float cannot hold a decimal figure exactly.
Every error names the file, the key and the problem.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from pathlib import Path
from typing import Final, Literal

import yaml

from shared.money import MINOR_UNITS, Currency, Money

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


LimitKind = Literal["granted", "request"]
LIMIT_KINDS: Final = ("granted", "request")


@dataclass(frozen=True, slots=True)
class LimitReading:
    """How a limit is read, word by word: does it cap what is *granted* (a larger request is eligible
    and granted the limit, and the decision says the cap applied) or limit what may be *asked* (a
    larger request is refused)? `quote` holds the document's own words, in its language and in
    English (empty where the document is silent and the operator sets the figure)."""

    kind: LimitKind
    quote: Mapping[str, str]
    reading: str


def parse_limit_reading(raw: object, languages: tuple[str, ...]) -> LimitReading:
    """A `limit:` block: `kind` (granted | request), `quote` with the given languages, `reading`."""
    if not isinstance(raw, dict):
        raise ValueError("must be a mapping with kind, quote, reading")
    kind = raw.get("kind")
    if kind not in LIMIT_KINDS:
        raise ValueError(f"kind must be one of {', '.join(LIMIT_KINDS)} (granted: capped; request: refused), got {kind!r}")
    quote = raw.get("quote") or {}
    if not isinstance(quote, dict) or not all(isinstance(k, str) and isinstance(v, str) and v.strip() for k, v in quote.items()):
        raise ValueError("quote must map languages to the quoted words")
    missing = [language for language in languages if language not in quote]
    if missing:
        raise ValueError(f"quote lacks the words in {', '.join(missing)} (the document's language and English)")
    reading = raw.get("reading")
    if not isinstance(reading, str) or not reading.strip():
        raise ValueError("reading must say how the words are applied")
    return LimitReading(kind=kind, quote={k: " ".join(v.split()) for k, v in quote.items()}, reading=" ".join(reading.split()))


class ParameterError(ValueError):
    """A parameter file is wrong; the message names the file, the key and the problem."""

    def __init__(self, file: str | Path, key: str, problem: str) -> None:
        self.file = str(file)
        self.key = key
        self.problem = problem
        super().__init__(f"{self.file}: {key}: {problem}")


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


def parse_value(unit: str, raw: object, currency: Currency | None) -> ParamValue:
    """A scheme parameter's value in its `unit` (see UNITS)."""
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


def read_yaml(path: Path, error: type[ParameterError]) -> object:
    """The YAML document in `path`, or `error` naming the file and why it cannot be read."""
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


def canonical_hash(data: object) -> str:
    """SHA-256 of a canonical JSON form (sorted keys, dates as ISO text)."""
    canonical = json.dumps(_stringify_keys(data), sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


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
    if isinstance(value, tuple | frozenset):
        items = [raw_repr(v) for v in value]
        return sorted(items, key=str) if isinstance(value, frozenset) else items
    return value
