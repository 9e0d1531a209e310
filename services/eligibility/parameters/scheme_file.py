"""A scheme's dated parameters: `schemes/<scheme>/parameters.yaml`, every figure its document states.

OpenFisca style: each parameter has a `unit:`, a `reference:` (the seed file, relative to the
repository, and the quoted words) and `values: {2020-06-11: {value: ...}}`. A value is in force
from its date until the next dated value. The key `undated` marks a value the document states
without saying since when: it is in force from before any date the system decides on, until the
first dated value. When a rule changes, add a dated value; never edit the past.

The file's `source:` names the document the figures come from: publisher, title, date, the seed
file (`../shared/seeds/<name>`) and the document's language. A parameter that is a limit carries a
`limit:` block: its `kind` (`granted`: the grant is cut to it; `request`: a larger request is
refused), the document's words (`quote`, in the document's language and in English) and the
`reading` that decides between the two.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Final, cast, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from services.eligibility.parameters.values import (
    UNITS,
    LimitReading,
    ParameterError,
    ParamValue,
    canonical_hash,
    parse_date,
    parse_limit_reading,
    parse_value,
    read_yaml,
)
from shared.events import Language, SchemeId
from shared.money import MINOR_UNITS, Currency

UNDATED: Final = date.min
"""Valid-from of a value whose source states no start date (YAML key `undated`)."""

SEED_PREFIX: Final = "../shared/seeds/"


class SchemeParameterError(ParameterError):
    """A scheme's `parameters.yaml` is invalid (a defect in the shipped rules)."""


Fail = Callable[[str, str], SchemeParameterError]


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
    limit: LimitReading | None = None
    """Where the parameter is a limit: how the document's words are read (capped or refused)."""

    def at(self, on: date) -> DatedValue | None:
        """The value in force on `on`: the latest value whose valid-from is not after `on`."""
        index = bisect.bisect_right([v.valid_from for v in self.values], on)
        return self.values[index - 1] if index else None


@dataclass(frozen=True, slots=True)
class Source:
    """The document a scheme's figures come from, cited by what it is."""

    publisher: str
    title: str
    date: str
    file: str
    language: Language

    def cite(self) -> str:
        return f'{self.publisher}, "{self.title}", {self.date} (`{self.file}`)'


@dataclass(frozen=True)
class SchemeParameters:
    """The dated parameters of one scheme, as loaded from its `parameters.yaml`."""

    scheme: SchemeId
    time_zone: str
    currency: Currency
    programme: str
    source: Source
    parameters: Mapping[str, Parameter]
    content_hash: str
    path: str

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)

    @classmethod
    def load(cls, path: Path) -> SchemeParameters:
        raw = read_yaml(path, SchemeParameterError)
        return cls.from_mapping(raw, source=str(path))

    @classmethod
    def from_mapping(cls, raw: object, source: str) -> SchemeParameters:
        def fail(key: str, problem: str) -> SchemeParameterError:
            return SchemeParameterError(source, key, problem)

        if not isinstance(raw, dict):
            raise fail("(file)", "must be a mapping with scheme, time_zone, currency, programme, source, parameters")
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
        document = _source(raw.get("source"), fail)
        params_raw = raw.get("parameters")
        if not isinstance(params_raw, dict) or not params_raw:
            raise fail("parameters", "must be a non-empty mapping")
        parameters: dict[str, Parameter] = {}
        semantic: dict[str, object] = {}
        for name, spec in params_raw.items():
            parameter, values_raw = _parameter(str(name), spec, currency, document.language, fail)
            parameters[parameter.name] = parameter
            semantic[parameter.name] = {"unit": parameter.unit, "values": values_raw}
        return cls(
            scheme=cast(SchemeId, scheme),  # checked against SchemeId above
            time_zone=str(time_zone),
            currency=currency,
            programme=programme,
            source=document,
            parameters=parameters,
            # What the rules compute with, not how it is documented: a corrected quote or
            # description does not re-version the decisions.
            content_hash=canonical_hash(
                {"scheme": scheme, "time_zone": time_zone, "currency": currency, "programme": programme, "parameters": semantic}
            ),
            path=source,
        )


def _source(raw: object, fail: Fail) -> Source:
    if not isinstance(raw, dict):
        raise fail("source", "must name the document: publisher, title, date, file, language")
    texts: dict[str, str] = {}
    for key in ("publisher", "title", "date", "file", "language"):
        value = raw.get(key)
        if not isinstance(value, str) or not value.strip():
            raise fail(f"source.{key}", "must be a non-empty text")
        texts[key] = value.strip()
    if not texts["file"].startswith(SEED_PREFIX):
        raise fail("source.file", f"must name the seed file relative to the repository ({SEED_PREFIX}<name>)")
    if texts["language"] not in get_args(Language):
        raise fail("source.language", f"unknown language {texts['language']!r}; use one of {', '.join(get_args(Language))}")
    return Source(texts["publisher"], texts["title"], texts["date"], texts["file"], cast(Language, texts["language"]))


def _parameter(name: str, spec: object, currency: Currency, language: str, fail: Fail) -> tuple[Parameter, object]:
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
            values.append(DatedValue(valid_from, parse_value(unit, entry["value"], currency)))
        except ValueError as exc:
            raise fail(f"{vkey}.value", str(exc)) from None
    values.sort(key=lambda v: v.valid_from)
    limit = None
    if "limit" in spec:
        try:
            limit = parse_limit_reading(spec["limit"], (language, "en"))
        except ValueError as exc:
            raise fail(f"{key}.limit", str(exc)) from None
    parameter = Parameter(
        name=name,
        unit=unit,
        reference=reference,
        description=str(spec.get("description", "")),
        values=tuple(values),
        limit=limit,
    )
    return parameter, values_raw
