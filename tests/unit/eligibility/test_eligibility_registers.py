"""Register numbers per country: valid, bad check digit, wrong length, spacing and punctuation normalised."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.eligibility.registers import (
    COURTS,
    REGISTERS,
    Identified,
    NotIdentified,
    identify,
    kbo_check_valid,
    luhn_valid,
    mod11_valid,
    parse_org_id,
)

pytestmark = pytest.mark.unit


def org_id(country: str, number: str | None) -> str:
    identity = identify(country, number)
    assert isinstance(identity, Identified), f"{country} {number!r}: {identity}"
    return identity.org_id


def reason(country: str, number: str | None) -> str:
    identity = identify(country, number)
    assert isinstance(identity, NotIdentified), f"{country} {number!r} was accepted as {identity}"
    return identity.reason


# --- Belgium: KBO/BCE, mod 97 ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "written",
    ["0566.988.259", "0566988259", "0566 988 259", "BE 0566.988.259", "BE0566988259", "BTW BE 0566.988.259", "566.988.259"],
)
def test_kbo_valid_in_every_usual_spelling(written: str) -> None:
    """0566.988.259 is the Vlaamse overheid's worked example: 5669882 mod 97 = 38, 97 - 38 = 59."""
    assert org_id("BE", written) == "BE-BCE_KBO-0566988259"


def test_kbo_numbers_of_the_1_series_are_valid_too() -> None:
    number = "1" + "0000000"
    check = 97 - int(number) % 97
    assert org_id("BE", f"{number}{check:02d}") == f"BE-BCE_KBO-{number}{check:02d}"


def test_kbo_bad_check_digit_wrong_length_establishment_and_letters() -> None:
    assert reason("BE", "0566.988.258") == "check_digit_invalid"
    assert identify("BE", "0566.988.2") == NotIdentified("wrong_length", REGISTERS["BE"], 8)
    assert identify("BE", "05669882591") == NotIdentified("wrong_length", REGISTERS["BE"], 11)
    assert reason("BE", "2.123.456.789") == "establishment_number"
    assert reason("BE", "0566.988.25O") == "malformed"  # a letter O for a zero


@given(st.integers(0, 99_999_999))
def test_kbo_check_digits_catch_every_single_digit_error(first8: int) -> None:
    number = f"{first8:08d}{97 - first8 % 97:02d}"
    assert kbo_check_valid(number)
    for position in range(10):
        for digit in "0123456789":
            if digit != number[position]:
                assert not kbo_check_valid(number[:position] + digit + number[position + 1 :])


# --- the Netherlands: KVK, 8 digits, no check digit -------------------------------------------------


@pytest.mark.parametrize("written", ["41202535", "4120 2535", "KvK 41202535", "KVK-nummer: 4120.2535", "kvk 41 20 25 35"])
def test_kvk_valid_in_every_usual_spelling(written: str) -> None:
    assert org_id("NL", written) == "NL-KVK-41202535"


def test_kvk_has_no_check_digit_so_only_length_and_form_are_checked() -> None:
    assert org_id("NL", "41202536") == "NL-KVK-41202536"
    assert identify("NL", "4120253") == NotIdentified("wrong_length", REGISTERS["NL"], 7)
    assert reason("NL", "000041202535") == "establishment_number"
    assert reason("NL", "4120253A") == "malformed"


# --- Germany: court + register number, no check digit ------------------------------------------------


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("Amtsgericht Aachen HRB 12345", "DE-CR-RA000197-HRB12345"),
        ("HRB 12345, AG Aachen", "DE-CR-RA000197-HRB12345"),
        ("Registergericht: Amtsgericht Stuttgart, HRB 758147", "DE-CR-RA000351-HRB758147"),
        ("Amtsgericht Bonn VR 8726", "DE-CR-RA000220-VR8726"),
        ("HRA 7672 HL, Amtsgericht Lübeck", "DE-CR-RA000290-HRA7672HL"),
        ("Amtsgericht Charlottenburg HRB 12345 B", "DE-CR-RA000217-HRB12345B"),
        ("hrb 12345 amtsgericht köln", "DE-CR-RA000280-HRB12345"),
        ("HRB 12345 Koeln", "DE-CR-RA000280-HRB12345"),
        ("Amtsgericht Frankfurt am Main HRB 1", "DE-CR-RA000242-HRB1"),
        ("GnR 12 Amtsgericht Frankfurt (Oder)", "DE-CR-RA000241-GnR12"),
    ],
)
def test_german_court_and_number_in_any_order_and_spelling(written: str, expected: str) -> None:
    """The canonical form follows org-id.guide's DE-CR examples (RA000220-VR8726, RA000351-HRB758147)."""
    assert org_id("DE", written) == expected


def test_german_number_without_a_known_court_or_register_is_refused() -> None:
    assert reason("DE", "HRB 12345") == "court_unknown"
    assert reason("DE", "HRB 12345 Frankfurt") == "court_unknown"  # am Main or (Oder)?
    assert reason("DE", "Amtsgericht Aachen 12345") == "malformed"
    assert reason("DE", "HRB 1 und HRB 2 Aachen") == "malformed"


def test_every_register_court_has_its_own_gleif_code() -> None:
    assert len(set(COURTS.values())) == 175
    assert all(code.startswith("RA") and len(code) == 8 for code in COURTS.values())


# --- Sweden: organisationsnummer, Luhn -------------------------------------------------------------


@pytest.mark.parametrize(
    "written", ["556091-2148", "5560912148", "556091 2148", "16556091-2148", "SE556091214801", "SE 5560912148 01"]
)
def test_organisationsnummer_valid_in_every_usual_spelling(written: str) -> None:
    assert org_id("SE", written) == "SE-ON-5560912148"


def test_organisationsnummer_bad_check_digit_wrong_length_and_personnummer() -> None:
    assert reason("SE", "556091-2149") == "check_digit_invalid"
    assert identify("SE", "556091-214") == NotIdentified("wrong_length", REGISTERS["SE"], 9)
    assert reason("SE", "811218-9876") == "personal_identity_number"  # third digit 1: a date, a person
    assert reason("SE", "19811218-9876") == "personal_identity_number"


def test_luhn() -> None:
    assert luhn_valid("5560912148") and not luhn_valid("5560912147")


# --- Norway: organisasjonsnummer, mod 11 ------------------------------------------------------------


@pytest.mark.parametrize("written", ["123456785", "123 456 785", "NO 123 456 785 MVA", "Org.nr. 123 456 785", "NO123456785MVA"])
def test_organisasjonsnummer_valid_in_every_usual_spelling(written: str) -> None:
    """123456785 is Brønnøysundregistrene's worked example (sum 138, remainder 6, check digit 5)."""
    assert org_id("NO", written) == "NO-BRC-123456785"


def test_organisasjonsnummer_bad_check_digit_wrong_length_and_remainder_one() -> None:
    assert reason("NO", "123456784") == "check_digit_invalid"
    assert identify("NO", "12345678") == NotIdentified("wrong_length", REGISTERS["NO"], 8)
    # 10000006: 1*3 + 6*2 = 15, remainder 4 -> 7; a number whose remainder is 1 has no valid check digit
    remainder_one = next(
        f"{n:08d}"
        for n in range(10_000_000, 10_001_000)
        if sum(int(d) * w for d, w in zip(f"{n:08d}", (3, 2, 7, 6, 5, 4, 3, 2), strict=True)) % 11 == 1
    )
    assert not any(mod11_valid(remainder_one + d) for d in "0123456789")


# --- any country ---------------------------------------------------------------------------------


def test_missing_number_and_unsupported_country() -> None:
    assert identify("BE", None) == NotIdentified("number_missing", REGISTERS["BE"])
    assert identify("NL", "   ") == NotIdentified("number_missing", REGISTERS["NL"])
    assert identify("FR", "552 100 554") == NotIdentified("register_not_supported")


def test_org_ids_parse_back_only_in_their_compact_checked_form() -> None:
    for written in (
        "BE-BCE_KBO-0566988259",
        "NL-KVK-41202535",
        "DE-CR-RA000197-HRB12345",
        "SE-ON-5560912148",
        "NO-BRC-123456785",
    ):
        identity = parse_org_id(written)
        assert isinstance(identity, Identified) and identity.org_id == written
    assert parse_org_id("BE-BCE_KBO-0566988258") == NotIdentified("check_digit_invalid", REGISTERS["BE"])
    assert isinstance(parse_org_id("BE-BCE_KBO-0566.988.259"), NotIdentified)  # not compact
    assert isinstance(parse_org_id("DE-CR-RA999999-HRB1"), NotIdentified)  # no such court
    assert isinstance(parse_org_id("SE-BLV-5560912148"), NotIdentified)  # deprecated list: SE-ON
    assert isinstance(parse_org_id("Flanders Make vzw"), NotIdentified)
