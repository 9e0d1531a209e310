"""Texts in six languages, and figures written the way each locale writes them (Babel).

The texts live in `templates/<language>.yaml`, one file per language, which a translator edits:
message keys -> text with named `{placeholders}` for the figures of the event. Lookup of a message
key: the exact key, then the key with its leading segments replaced by `*` (so `*.funding.missing`
explains `vlaio.funding.missing` and `ttc.funding.missing` alike, unless either has its own text),
then the same in English. Pure apart from reading the files once.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any, Final
from zoneinfo import ZoneInfo

import yaml
from babel import Locale
from babel.dates import format_date, format_datetime
from babel.localedata import locale_identifiers
from babel.numbers import format_currency, format_decimal, format_percent

from shared.events import Figure, Language
from shared.money import MINOR_UNITS

TEMPLATES: Final = Path(__file__).parent / "templates"
LANGUAGES: Final[tuple[Language, ...]] = ("nl", "sv", "nb", "en", "de", "fr")
FALLBACK: Final[Language] = "en"

#: The locale of each language when the scheme's country does not refine it.
DEFAULT_LOCALE: Final[Mapping[str, str]] = {
    "nl": "nl_BE",
    "sv": "sv_SE",
    "nb": "nb_NO",
    "en": "en_GB",
    "de": "de_DE",
    "fr": "fr_BE",
}
#: The country a scheme's programme runs in; its locale variant is used when Babel has one
#: (a Dutch text about a VLAIO scheme is written nl_BE, an English one about Norway en_NO).
#: The TTC Euregio spans three countries: the language decides alone.
SCHEME_TERRITORY: Final[Mapping[str, str]] = {"vlaio": "BE", "s3": "SE", "nic": "NO"}


def locale_for(language: str, scheme: str | None = None) -> str:
    """The Babel locale a message in `language` about `scheme` is formatted in."""
    language = language if language in DEFAULT_LOCALE else FALLBACK
    territory = SCHEME_TERRITORY.get((scheme or "").split(".")[0])
    if territory is not None:
        candidate = f"{language}_{territory}"
        if candidate in _known_locales():
            return candidate
    return DEFAULT_LOCALE[language]


@lru_cache(maxsize=1)
def _known_locales() -> frozenset[str]:
    return frozenset(locale_identifiers())


def wildcard_keys(key: str) -> list[str]:
    """`a.b.c` -> [`a.b.c`, `*.b.c`, `*.c`]: the exact key first, then ever more general ones."""
    parts = key.split(".")
    return [key] + ["*." + ".".join(parts[i:]) for i in range(1, len(parts))]


def placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


@dataclass(frozen=True)
class LanguageTexts:
    language: str
    sections: Mapping[str, Mapping[str, Any]]

    def get(self, section: str, key: str) -> str | None:
        value = self.sections.get(section, {}).get(key)
        return value if isinstance(value, str) else None


@dataclass(frozen=True)
class Catalog:
    """Every language's texts; `message` and `text` fall back to English, never to nothing silently."""

    languages: Mapping[str, LanguageTexts]

    @classmethod
    def load(cls, directory: Path = TEMPLATES) -> Catalog:
        languages: dict[str, LanguageTexts] = {}
        for language in LANGUAGES:
            path = directory / f"{language}.yaml"
            doc = yaml.safe_load(path.read_text(encoding="utf-8"))
            if not isinstance(doc, dict) or doc.get("language") != language:
                raise ValueError(f"{path}: must be a mapping with `language: {language}`")
            sections = {k: v for k, v in doc.items() if isinstance(v, dict)}
            languages[language] = LanguageTexts(language, sections)
        return cls(languages)

    def lookup(self, language: str, section: str, key: str) -> str | None:
        """The text of `key` in `language` only (exact or wildcard), or None."""
        texts = self.languages.get(language)
        if texts is None:
            return None
        candidates = wildcard_keys(key) if section == "messages" else [key]
        for candidate in candidates:
            text = texts.get(section, candidate)
            if text is not None:
                return text
        return None

    def resolve(self, language: str, section: str, key: str) -> tuple[str | None, bool]:
        """(text, fell back): the text in `language`, else in English (fell back = True), else None."""
        text = self.lookup(language, section, key)
        if text is not None:
            return text, False
        return self.lookup(FALLBACK, section, key), True


@dataclass
class Formatter:
    """Writes figures the way `locale` does; collects what went wrong (keys and names, never values)."""

    catalog: Catalog
    language: str
    locale: str
    time_zone: str = "UTC"
    problems: list[str] = field(default_factory=list)

    def money(self, amount_minor: int, currency: str) -> str:
        return _money(amount_minor, currency, self.locale)

    def percent(self, exact: str) -> str:
        """An exact percentage string: "50", "12.5", or "100/3" (a non-terminating ratio, shown rounded)."""
        return _percent(exact, self.locale)

    def integer(self, value: int) -> str:
        return _integer(value, self.locale)

    def day(self, iso: str) -> str:
        return _day(iso, self.locale)

    def moment(self, iso: str) -> str:
        return _moment(iso, self.time_zone, self.locale)

    def country(self, code: str) -> str:
        return _country(code, self.locale)

    def word(self, key: str) -> str:
        text, _ = self.catalog.resolve(self.language, "common", key)
        return text if text is not None else key

    def figure(self, name: str, figure: Figure) -> str:
        unit, value = figure.unit, figure.value
        try:
            if unit == "money" and isinstance(value, int) and not isinstance(value, bool) and figure.currency:
                return self.money(value, figure.currency)
            if unit == "percent":
                return self.percent(str(value))
            if unit in ("count", "pages", "years") and isinstance(value, int) and not isinstance(value, bool):
                # A count named like a year is a calendar year: never grouped ("2020", not "2.020").
                return str(value) if name == "year" or name.endswith("_year") else self.integer(value)
            if unit == "date":
                return self.day(str(value))
            if unit == "datetime":
                return self.moment(str(value))
            if unit == "bool":
                return self.word("yes" if value is True else "no")
            if unit == "text" and name == "country":
                return self.country(str(value))
        except (ValueError, ArithmeticError, KeyError):
            self.problems.append(f"figure_unformattable:{name}:{unit}")
        return str(value)

    def fill(self, text: str, values: Mapping[str, str], what: str) -> str | None:
        """`text` with its placeholders filled from `values`; None (and a problem noted) if one is missing."""
        missing = placeholders(text) - set(values)
        if missing:
            self.problems.append(f"placeholder_missing:{what}:{','.join(sorted(missing))}")
            return None
        try:
            return text.format_map(values)
        except (ValueError, IndexError, KeyError, AttributeError):
            self.problems.append(f"template_invalid:{what}")
            return None

    def common(self, key: str, **values: str) -> str:
        """A layout text (section `common`) filled with `values`; the key itself when there is none."""
        text, fell_back = self.catalog.resolve(self.language, "common", key)
        if fell_back:
            self.problems.append(f"text_missing:common.{key}:{self.language}")
        if text is None:
            return key
        filled = self.fill(text, values, f"common.{key}")
        return filled if filled is not None else text

    def section(self, section: str, key: str, **values: str) -> str | None:
        text, fell_back = self.catalog.resolve(self.language, section, key)
        if fell_back:
            self.problems.append(f"text_missing:{section}.{key}:{self.language}")
        if text is None:
            return None
        return self.fill(text, values, f"{section}.{key}")


# Figures written by Babel, remembered: the same thresholds, dates and amounts come back in e-mail after
# e-mail, and each Babel call costs tens of µs (notify renders at send time, in its dispatcher). Pure
# functions of their arguments; an error is raised again, never remembered.
_FIGURES = 8192


@lru_cache(maxsize=_FIGURES)
def _money(amount_minor: int, currency: str, locale: str) -> str:
    major = Decimal(amount_minor).scaleb(-(len(str(MINOR_UNITS[currency])) - 1))
    return format_currency(major, currency, locale=locale)


@lru_cache(maxsize=_FIGURES)
def _percent(exact: str, locale: str) -> str:
    if "/" in exact:
        numerator, denominator = exact.split("/", 1)
        value = (Decimal(numerator) / Decimal(denominator)).quantize(Decimal("0.01"))
        return "≈" + format_percent(value / 100, locale=locale, decimal_quantization=False)
    return format_percent(Decimal(exact) / 100, locale=locale, decimal_quantization=False)


@lru_cache(maxsize=_FIGURES)
def _integer(value: int, locale: str) -> str:
    return format_decimal(value, locale=locale)


@lru_cache(maxsize=_FIGURES)
def _day(iso: str, locale: str) -> str:
    return format_date(date.fromisoformat(iso), format="long", locale=locale)


@lru_cache(maxsize=_FIGURES)
def _moment(iso: str, time_zone: str, locale: str) -> str:
    return format_datetime(datetime.fromisoformat(iso), format="medium", tzinfo=ZoneInfo(time_zone), locale=locale)


@lru_cache(maxsize=_FIGURES)
def _country(code: str, locale: str) -> str:
    return str(Locale.parse(locale).territories.get(code, code))
