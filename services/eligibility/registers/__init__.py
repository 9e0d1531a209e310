"""The beneficiary as an identity: its number in its country's register, normalised and checked.

`identify(country, number)` turns what an applicant wrote ("0521.749.439", "BE 0521 749 439",
"Amtsgericht Aachen HRB 12345", "556091-2148") into one canonical identity, or says precisely why
it cannot. The identity is an org-id.guide identifier: the register's list code, a hyphen, and the
number in its compact form, e.g. `BE-BCE_KBO-0521749439`. org-id.guide's own examples write some
numbers with the register's display punctuation ("0521.749.439", "556091-2148"); punctuation is
formatting, not part of the number, so it is dropped here (as org-id.guide's DE-CR guidance says,
"Remove all spaces from the identifier"), and one organisation has exactly one identity.

Which registers define check digits, and where that is read (each `Register` below says it too):

* BE, KBO/BCE enterprise number (`BE-BCE_KBO`): 10 digits, the first 0 or 1 (KB of 23 June 2003,
  form Zxxx.xxx.xxx); the last two digits are 97 - (the first eight mod 97), as the Vlaamse
  overheid documents it ("Checksum97 op een ondernemingsnummer"). A number starting 2-8 is an
  establishment unit's (vestigingseenheid), not the organisation's.
* NL, KVK number (`NL-KVK`): 8 digits (KVK, "Numbers in the Business Register"); KVK publishes no
  check digit, so only the length is checked. 12 digits are a branch's establishment number.
* DE, Registergericht and register number (`DE-CR`): no check digit, the number is the court's
  running number; the court must be a known registration court, whose GLEIF code is part of the
  identity (`de_register_courts.yaml`).
* SE, organisationsnummer (`SE-ON`): 10 digits, the third at least 2 (a personnummer's is 0 or 1),
  lag (1974:174) om identitetsbeteckning för juridiska personer m.fl.; Luhn (mod 10) check digit.
* NO, organisasjonsnummer (`NO-BRC`): 9 digits, the last a mod-11 check digit with weights
  3, 2, 7, 6, 5, 4, 3, 2 (Brønnøysundregistrene, "The organization number"); remainder 1 gives no
  valid check digit, so such a number does not exist.

Sweden: org-id.guide has deprecated `SE-BLV` (Bolagsverket) "in favour of" `SE-ON`, which lists
`SE-BLV` among its former prefixes; `SE-ON` is used. A Swedish sole trader's number is its owner's
personnummer: that is personal data and not an organisation number, so it is refused and never
repeated in a decision. No figure of a refusal repeats what was typed.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Final, Literal

import yaml

Reason = Literal[
    "number_missing",
    "register_not_supported",
    "malformed",
    "wrong_length",
    "check_digit_invalid",
    "establishment_number",
    "personal_identity_number",
    "court_unknown",
]


@dataclass(frozen=True, slots=True)
class Register:
    """A country's register of organisations, as org-id.guide lists it."""

    country: str
    list_code: str
    name: str
    digits: int | None
    check_digits: str
    source: str


@dataclass(frozen=True, slots=True)
class Identified:
    register: Register
    number: str

    @property
    def org_id(self) -> str:
        return f"{self.register.list_code}-{self.number}"


@dataclass(frozen=True, slots=True)
class NotIdentified:
    reason: Reason
    register: Register | None = None
    digits: int | None = None


Identity = Identified | NotIdentified

KBO: Final = Register(
    "BE",
    "BE-BCE_KBO",
    "KBO/BCE",
    10,
    "97 - (the first eight digits mod 97) is the last two",
    "KB 23 June 2003 (form Zxxx.xxx.xxx, Z = 0 or 1); Vlaamse overheid, 'Checksum97 op een ondernemingsnummer'",
)
KVK: Final = Register(
    "NL",
    "NL-KVK",
    "KVK",
    8,
    "none published",
    "KVK, 'Numbers in the Business Register' (an 8-digit KVK number; a branch has a 12-digit establishment number)",
)
HANDELSREGISTER: Final = Register(
    "DE",
    "DE-CR",
    "Handelsregister",
    None,
    "none (the court's running number)",
    "org-id.guide DE-CR: DE-CR-[court's GLEIF RA code]-[register number without spaces]",
)
ORGANISATIONSNUMMER: Final = Register(
    "SE",
    "SE-ON",
    "organisationsnummer",
    10,
    "Luhn over the ten digits",
    "lag (1974:174) om identitetsbeteckning för juridiska personer m.fl.; third digit at least 2",
)
ORGANISASJONSNUMMER: Final = Register(
    "NO",
    "NO-BRC",
    "organisasjonsnummer",
    9,
    "mod 11 with weights 3, 2, 7, 6, 5, 4, 3, 2",
    "Brønnøysundregistrene, 'The organization number' (9 digits, the last a mod-11 check digit)",
)
REGISTERS: Final[Mapping[str, Register]] = {
    r.country: r for r in (KBO, KVK, HANDELSREGISTER, ORGANISATIONSNUMMER, ORGANISASJONSNUMMER)
}
"""The register of each supported country (ISO 3166-1 alpha-2)."""

_SEPARATORS: Final = re.compile(r"[\s.\-/,:;_()]+")


def _compact(text: str) -> str:
    return _SEPARATORS.sub("", unicodedata.normalize("NFKC", text)).upper()


def _strip_labels(text: str, prefixes: tuple[str, ...] = (), suffixes: tuple[str, ...] = ()) -> str:
    """`text` without separators and without the given labels around it (each at most once)."""
    compact = _compact(text)
    for prefix in prefixes:  # in the given order: "BTW" then "BE" strips "BTW BE0521..."
        if compact.startswith(prefix):
            compact = compact[len(prefix) :]
    for suffix in suffixes:
        if compact.endswith(suffix):
            compact = compact[: -len(suffix)]
    return compact


def _digits_of(text: str, prefixes: tuple[str, ...] = (), suffixes: tuple[str, ...] = ()) -> str | None:
    """The digits of `text` once separators and labels are dropped; None if anything else is left."""
    compact = _strip_labels(text, prefixes, suffixes)
    return compact if compact.isascii() and compact.isdigit() else None


# --- Belgium ----------------------------------------------------------------------------------------


def kbo_check_valid(number: str) -> bool:
    """97 - (the first eight digits mod 97) equals the last two (e.g. 0566.988.259: 5669882 mod 97 = 38, 97 - 38 = 59)."""
    return 97 - int(number[:8]) % 97 == int(number[8:])


def _belgium(text: str) -> Identity:
    labels = ("ONDERNEMINGSNUMMER", "NUMERODENTREPRISE", "KBO", "BCE", "BTW", "TVA", "BE")
    digits = _digits_of(text, prefixes=labels)
    if digits is None:
        return NotIdentified("malformed", KBO)
    if len(digits) == 9:  # an old 9-digit (VAT) number: its enterprise number is the same with a leading 0
        digits = "0" + digits
    if len(digits) != 10:
        return NotIdentified("wrong_length", KBO, len(digits))
    if digits[0] not in "01":
        return NotIdentified("establishment_number", KBO)  # 2-8: an establishment unit (vestigingseenheid)
    if not kbo_check_valid(digits):
        return NotIdentified("check_digit_invalid", KBO)
    return Identified(KBO, digits)


# --- the Netherlands --------------------------------------------------------------------------------


def _netherlands(text: str) -> Identity:
    digits = _digits_of(text, prefixes=("KVKNUMMER", "KVKNR", "KVK"))
    if digits is None:
        return NotIdentified("malformed", KVK)
    if len(digits) == 12:
        return NotIdentified("establishment_number", KVK)  # a vestigingsnummer names a branch
    if len(digits) != 8:
        return NotIdentified("wrong_length", KVK, len(digits))
    return Identified(KVK, digits)


# --- Germany ----------------------------------------------------------------------------------------

_REGISTER_TYPES: Final = {"HRA": "HRA", "HRB": "HRB", "GNR": "GnR", "PR": "PR", "VR": "VR", "GSR": "GsR"}
"""Registers a Registergericht keeps: Handelsregister A and B (HGB), Genossenschaftsregister (GenG),
Partnerschaftsregister (PartGG), Vereinsregister (BGB, where most cluster associations, e.V., are),
Gesellschaftsregister (eGbR, since 2024)."""
_DE_NUMBER: Final = re.compile(
    r"(?<![A-Za-z])((?i:HRA|HRB|GNR|PR|VR|GSR))\s*(?:Nr\.?\s*)?(\d{1,7})((?:\s*[A-Z]{1,3})?)(?![A-Za-z\d])"
)
"""The register and its number; a suffix of capitals after the number is part of it (Berlin's
"HRB 123456 B", Lübeck's "HRA 7672 HL", as in org-id.guide's example RA000290-HRA7672HL)."""
_COURT_WORDS: Final = re.compile(
    r"\b(Amtsgericht|Registergericht|Handelsregister|Vereinsregister|Genossenschaftsregister|Partnerschaftsregister"
    r"|Gesellschaftsregister|Registernummer|Register|AG|Sitz)\b",
    re.IGNORECASE,
)


def _fold(name: str) -> str:
    lowered = name.casefold().replace("ä", "ae").replace("ö", "oe").replace("ü", "ue").replace("ß", "ss")
    plain = unicodedata.normalize("NFKD", lowered).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]", "", plain)


def _load_courts() -> dict[str, str]:
    data = yaml.safe_load(Path(__file__).with_name("de_register_courts.yaml").read_text(encoding="utf-8"))
    courts: dict[str, str] = {_fold(name): code for name, code in data["courts"].items()}
    for alias, name in data["aliases"].items():
        courts[_fold(alias)] = data["courts"][name]
    return courts


COURTS: Final[Mapping[str, str]] = _load_courts()
"""Folded court name -> GLEIF Registration Authority code (see de_register_courts.yaml)."""


def _germany(text: str) -> Identity:
    found = list(_DE_NUMBER.finditer(text))
    if len(found) != 1:
        return NotIdentified("malformed", HANDELSREGISTER)
    match = found[0]
    kind = _REGISTER_TYPES[match.group(1).upper()]
    number = match.group(2) + match.group(3).replace(" ", "")
    court_text = _COURT_WORDS.sub(" ", text[: match.start()] + " " + text[match.end() :])
    court = COURTS.get(_fold(court_text))
    if court is None:
        return NotIdentified("court_unknown", HANDELSREGISTER)
    return Identified(HANDELSREGISTER, f"{court}-{kind}{number}")


# --- Sweden -----------------------------------------------------------------------------------------


def luhn_valid(digits: str) -> bool:
    """The Luhn (mod 10) check: from the right, every second digit doubled (9 subtracted above 9)."""
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2 == 1:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _sweden(text: str) -> Identity:
    vat_form = _compact(text).startswith("SE")
    digits = _digits_of(text, prefixes=("ORGNR", "SE"))
    if digits is None:
        return NotIdentified("malformed", ORGANISATIONSNUMMER)
    if len(digits) == 12 and digits.startswith("16"):  # the 12-digit form of a legal person: 16 + the number
        digits = digits[2:]
    elif len(digits) == 12 and digits[:2] in ("18", "19", "20"):  # century + personnummer: a sole trader
        return NotIdentified("personal_identity_number", ORGANISATIONSNUMMER)
    elif len(digits) == 12 and vat_form and digits.endswith("01"):  # the VAT number: SE + number + 01
        digits = digits[:10]
    if len(digits) != 10:
        return NotIdentified("wrong_length", ORGANISATIONSNUMMER, len(digits))
    if digits[2] in "01":
        return NotIdentified("personal_identity_number", ORGANISATIONSNUMMER)
    if not luhn_valid(digits):
        return NotIdentified("check_digit_invalid", ORGANISATIONSNUMMER)
    return Identified(ORGANISATIONSNUMMER, digits)


# --- Norway -----------------------------------------------------------------------------------------

_NO_WEIGHTS: Final = (3, 2, 7, 6, 5, 4, 3, 2)


def mod11_valid(digits: str) -> bool:
    """Brønnøysund's check: 11 - (sum of the first eight digits times 3,2,7,6,5,4,3,2, mod 11) is the
    ninth (remainder 0: check digit 0; remainder 1: no valid check digit, the number is invalid)."""
    remainder = sum(int(d) * w for d, w in zip(digits[:8], _NO_WEIGHTS, strict=True)) % 11
    if remainder == 1:
        return False
    return (0 if remainder == 0 else 11 - remainder) == int(digits[8])


def _norway(text: str) -> Identity:
    digits = _digits_of(text, prefixes=("NO", "ORGNR", "ORGANISASJONSNUMMER"), suffixes=("MVA",))
    if digits is None:
        return NotIdentified("malformed", ORGANISASJONSNUMMER)
    if len(digits) != 9:
        return NotIdentified("wrong_length", ORGANISASJONSNUMMER, len(digits))
    if not mod11_valid(digits):
        return NotIdentified("check_digit_invalid", ORGANISASJONSNUMMER)
    return Identified(ORGANISASJONSNUMMER, digits)


_BY_COUNTRY: Final[Mapping[str, Callable[[str], Identity]]] = {
    "BE": _belgium,
    "NL": _netherlands,
    "DE": _germany,
    "SE": _sweden,
    "NO": _norway,
}


@lru_cache(maxsize=65_536)
def identify(country: str, number: str | None) -> Identity:
    """The organisation's identity in the register of `country`, or why there is none (memoised:
    several criteria of one decision ask, and both arguments are plain texts)."""
    parse = _BY_COUNTRY.get(country)
    if parse is None:
        return NotIdentified("register_not_supported")
    if number is None or not number.strip():
        return NotIdentified("number_missing", REGISTERS[country])
    return parse(number)


_ORG_ID: Final = re.compile(r"^(BE-BCE_KBO|NL-KVK|DE-CR|SE-ON|NO-BRC)-(.+)$")
_DE_ORG_NUMBER: Final = re.compile(r"^(RA\d{6})-(HRA|HRB|GnR|PR|VR|GsR)(\d{1,7}[A-Z]{0,3})$")


def parse_org_id(text: str) -> Identity:
    """An org-id.guide identifier as this module writes it (e.g. from an operator's list), checked."""
    match = _ORG_ID.match(text.strip())
    if match is None:
        return NotIdentified("malformed")
    code, number = match.groups()
    register = next(r for r in REGISTERS.values() if r.list_code == code)
    if register is HANDELSREGISTER:
        de = _DE_ORG_NUMBER.match(number)
        if de is None or de.group(1) not in set(COURTS.values()):
            return NotIdentified("malformed", register)
        return Identified(register, number)
    identity = identify(register.country, number)
    if isinstance(identity, Identified) and identity.number != number:
        return NotIdentified("malformed", register)  # not in compact form
    return identity
