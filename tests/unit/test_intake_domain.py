"""Intake's validation: every bad input is a specific, machine-readable rejection, never a crash."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.intake.domain import (
    DEFAULT_MAX_AMOUNT_MINOR,
    Invalid,
    SubmissionPolicy,
    body_fingerprint,
    money_paths,
    parse_submission,
)
from shared.events import Application, ApplicationSubmitted

pytestmark = pytest.mark.unit

SAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "local" / "samples" / "vlaio-spearhead-2019.json"


def sample() -> dict[str, Any]:
    return json.loads(SAMPLE.read_text())


def errors_of(document: object) -> dict[tuple[object, ...], str]:
    raw = document if isinstance(document, bytes) else json.dumps(document).encode()
    result = parse_submission(raw)
    assert isinstance(result, Invalid)
    return {tuple(e.loc): e.type for e in result.errors}


def test_a_valid_submission_becomes_an_application() -> None:
    result = parse_submission(json.dumps(sample()).encode())
    assert isinstance(result, Application)
    assert result.submitted_at.utcoffset() is not None


@pytest.mark.parametrize("path", sorted(SAMPLE.parent.glob("[!z]*.json")), ids=lambda p: p.stem)
def test_the_application_is_the_validated_contract_itself_not_the_submitted_event(path: Path) -> None:
    """Intake builds the Application from the fields it validated once (no second validation):
    it must be what validating the document as an Application gives, field for field and byte for byte."""
    result = parse_submission(path.read_bytes())
    assert type(result) is Application
    expected = Application.model_validate_json(path.read_bytes())
    assert result == expected
    assert result.model_fields_set == set(Application.model_fields)
    assert result.model_dump_json() == expected.model_dump_json()
    assert body_fingerprint(result) == body_fingerprint(expected)


@pytest.mark.parametrize(
    ("mutate", "loc", "error_type"),
    [
        (lambda d: d.pop("contact"), ("contact",), "missing"),
        (lambda d: d.update(scheme="vlaio.nope"), ("scheme",), "literal_error"),
        (lambda d: d.update(submitted_at="2019-10-01T10:00:00"), ("submitted_at",), "timezone_aware"),
        (lambda d: d["applicant"].update(legal_person="yes please"), ("applicant", "legal_person"), "bool_parsing"),
        (
            lambda d: d["funding"]["years"][0]["requested"].update(amount_minor=-1),
            ("funding", "years", 0, "requested", "amount_minor"),
            "money_negative",
        ),
        (
            lambda d: d["funding"]["years"][0]["requested"].update(amount_minor=0.5),
            ("funding", "years", 0, "requested", "amount_minor"),
            "money_fractional",
        ),
        (
            lambda d: d["funding"]["years"][0]["requested"].update(currency="USD"),
            ("funding", "years", 0, "requested", "currency"),
            "literal_error",
        ),
        (lambda d: d.update(unexpected=1), ("unexpected",), "extra_forbidden"),
        (lambda d: d["contact"].update(email="not-an-address"), ("contact", "email"), "string_pattern_mismatch"),
    ],
)
def test_each_defect_gets_its_own_error(mutate, loc: tuple[object, ...], error_type: str) -> None:
    document = sample()
    mutate(document)
    assert errors_of(document)[loc] == error_type


def test_all_errors_are_reported_at_once_and_what_can_be_read_is_kept() -> None:
    document = sample()
    document.pop("submitted_at")
    document["scheme"] = "nope"
    result = parse_submission(json.dumps(document).encode())
    assert isinstance(result, Invalid)
    assert {tuple(e.loc) for e in result.errors} == {("submitted_at",), ("scheme",)}
    assert result.application_id == "DEMO-VLAIO-SPC-001" and result.language == "nl"
    assert result.contact is not None


@pytest.mark.parametrize(
    ("raw", "error_type"),
    [(b"{", "json_invalid"), (b"\xff\xfe", "json_invalid"), (b"[1, 2]", "object_expected"), (b"null", "object_expected")],
)
def test_unreadable_bodies(raw: bytes, error_type: str) -> None:
    result = parse_submission(raw)
    assert isinstance(result, Invalid) and result.errors[0].type == error_type


def test_errors_never_echo_the_input() -> None:
    document = sample()
    document["contact"]["email"] = "secret-person@@example"
    result = parse_submission(json.dumps(document).encode())
    assert isinstance(result, Invalid)
    assert "secret-person" not in json.dumps([e.model_dump() for e in result.errors])


def test_the_fingerprint_tells_resubmissions_from_conflicts() -> None:
    a = parse_submission(json.dumps(sample()).encode())
    changed = sample()
    changed["members"].pop()
    b = parse_submission(json.dumps(changed).encode())
    assert isinstance(a, Application) and isinstance(b, Application)
    # (ignore below) an Application, asserted above
    assert body_fingerprint(a) == body_fingerprint(parse_submission(json.dumps(sample()).encode()))  # type: ignore[arg-type]
    assert body_fingerprint(a) != body_fingerprint(b)


@settings(max_examples=300, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
        lambda children: st.lists(children) | st.dictionaries(st.text(), children),
        max_leaves=30,
    )
)
def test_any_json_is_an_application_or_a_specific_rejection(document: object) -> None:
    try:
        raw = json.dumps(document).encode()
    except ValueError:
        return
    result = parse_submission(raw)
    assert isinstance(result, Application | Invalid)
    if isinstance(result, Invalid):
        assert result.errors and all(e.type for e in result.errors)


# --- issue 10: what intake now refuses, on both channels (the validation is shared) ----------------

NOW = datetime(2019, 10, 1, 12, 0, tzinfo=UTC)


def parse(document: object, **policy: object) -> Application | Invalid:
    raw = document if isinstance(document, bytes) else json.dumps(document).encode()
    return parse_submission(raw, SubmissionPolicy(**policy), NOW)  # type: ignore[arg-type]  # the bounds under test


def found(document: object, **policy: object) -> set[tuple[tuple[object, ...], str]]:
    result = parse(document, **policy)
    assert isinstance(result, Invalid), "expected a rejection"
    return {(tuple(e.loc), e.type) for e in result.errors}


def test_duplicate_keys_are_refused_wherever_they_are() -> None:
    raw = json.dumps(sample())
    raw = raw.replace('"scheme"', '"scheme": "nic.cluster", "scheme"', 1)
    raw = raw.replace('"email"', '"email": "first@example.org", "email"', 1)
    assert found(raw.encode()) == {(("scheme",), "json_duplicate_key"), (("contact", "email"), "json_duplicate_key")}
    # Which address was meant is a guess: the rejection names no contact.
    result = parse(raw.encode())
    assert isinstance(result, Invalid) and result.contact is None


def test_a_duplicate_key_elsewhere_keeps_what_can_be_read_for_the_applicant() -> None:
    raw = json.dumps(sample()).replace('"country"', '"country": "NL", "country"', 1).encode()
    result = parse(raw)
    assert isinstance(result, Invalid) and {e.type for e in result.errors} == {"json_duplicate_key"}
    assert result.application_id == "DEMO-VLAIO-SPC-001" and result.contact is not None


@pytest.mark.parametrize(
    ("text", "error_type"),
    [
        ("Anna\r\nBcc: all@example.org", "string_control_character"),
        ("Anna\nSchmitz", "string_control_character"),
        ("tab\there", "string_control_character"),
        ("bell\x07", "string_control_character"),
        ("del\x7f", "string_control_character"),
        ("c1\x85next-line", "string_control_character"),
        ("c1\x9bcsi", "string_control_character"),
        ("Evil\u202eCorp", "string_bidi_control"),
        ("\u202aembedding", "string_bidi_control"),
        ("\u202doverride", "string_bidi_control"),
        ("\u2066isolate\u2069", "string_bidi_control"),
        ("\u2068first-strong", "string_bidi_control"),
        ("nul\x00", "string_nul_character"),
    ],
)
@pytest.mark.parametrize("field", [("applicant", "organisation_name"), ("title",), ("members", 0, "name"), ("summary",)])
def test_control_and_bidi_characters_are_refused_with_their_own_type(
    text: str, error_type: str, field: tuple[object, ...]
) -> None:
    document = sample()
    target: Any = document  # walks dicts and lists by the path's keys and indices
    for step in field[:-1]:
        target = target[step]
    target[field[-1]] = text
    if (
        field == ("summary",)
        and error_type == "string_control_character"
        and set(text) & set("\t\r\n")
        and not (set(text) - set("\t\r\n") & {chr(c) for c in [*range(32), *range(0x7F, 0xA0)]})
    ):
        assert isinstance(parse(document), Application), "TAB, LF and CR are allowed in the multi-line summary"
        return
    assert (field, error_type) in found(document)


def test_ordinary_text_in_any_script_is_accepted() -> None:
    document = sample()
    document["applicant"]["organisation_name"] = "Ærø Kløver AB – Škoda ‘quoted’ ﻿שלום مرحبا 東京 💶"
    document["summary"] = "Two lines:\r\n\tindented\nthird."
    assert isinstance(parse(document), Application)


def test_refused_characters_in_field_names_are_found_and_not_echoed() -> None:
    document = sample()
    document["applicant"]["bad\u202ekey"] = 1
    assert found(document) == {(("applicant", "bad\ufffdkey"), "string_bidi_control")}


@pytest.mark.parametrize(
    "path",
    [
        ("funding", "years", 0, "requested"),
        ("funding", "years", 1, "eligible_costs"),
        ("funding", "co_financing", 0, "amount"),
    ],
)
def test_every_amount_is_bounded_by_the_operator_maximum(path: tuple[object, ...]) -> None:
    document = sample()
    document["funding"]["co_financing"] = [{"source": "own funds", "amount": {"amount_minor": 1, "currency": "EUR"}}]
    target: Any = document  # walks dicts and lists by the path's keys and indices
    for step in path:
        target = target[step]
    target["amount_minor"] = 10**9
    assert isinstance(parse(document, max_amount_minor=10**9), Application), "the maximum itself is accepted"
    target["amount_minor"] = 10**9 + 1
    assert found(document, max_amount_minor=10**9) == {((*path, "amount_minor"), "money_too_large")}
    target["amount_minor"] = 10**30
    assert ((*path, "amount_minor"), "money_too_large") in found(document)  # the default maximum


def test_the_default_maximum_keeps_any_submission_within_bigint() -> None:
    assert DEFAULT_MAX_AMOUNT_MINOR * (20 * 2 + 50) < 2**63 - 1
    assert ("funding", "years", "*", "requested") in money_paths(ApplicationSubmitted)


def test_an_oversized_amount_is_reported_with_the_contracts_errors() -> None:
    document = sample()
    document["funding"]["years"][0]["requested"]["amount_minor"] = 10**30
    document.pop("submitted_at")
    assert found(document) == {
        (("funding", "years", 0, "requested", "amount_minor"), "money_too_large"),
        (("submitted_at",), "missing"),
    }


def test_submitted_at_may_not_be_later_than_now_plus_the_clock_skew() -> None:
    document = sample()
    document["submitted_at"] = (NOW + timedelta(seconds=300)).isoformat()
    assert isinstance(parse(document, max_clock_skew=timedelta(seconds=300)), Application)
    document["submitted_at"] = (NOW + timedelta(seconds=301)).astimezone(timezone(timedelta(hours=-7))).isoformat()
    assert found(document, max_clock_skew=timedelta(seconds=300)) == {(("submitted_at",), "submitted_at_in_future")}
    document["submitted_at"] = "2999-01-01T00:00:00Z"
    assert found(document) == {(("submitted_at",), "submitted_at_in_future")}


@pytest.mark.parametrize(
    "raw",
    [
        b'{"a": NaN}',
        b'{"a": Infinity}',
        b'{"a": -Infinity}',
        b'{"a": 1e400}',
        b'{"a": ' + b"1" * 5000 + b"}",  # Python refuses to convert it: once an unhandled ValueError
        '{"a": 1}'.encode("utf-16"),
        b"\xef\xbb\xbf{}",
    ],
)
def test_json_that_rfc_8259_does_not_exchange_is_refused(raw: bytes) -> None:
    result = parse_submission(raw)
    assert isinstance(result, Invalid) and [e.type for e in result.errors] == ["json_invalid"]


def test_the_same_instant_with_another_offset_is_the_same_body() -> None:
    a = parse(sample())
    other = sample()
    other["submitted_at"] = "2019-10-01T08:00:00Z"  # the sample says 10:00+02:00
    other["applicant"]["organisation_name"] = "  " + other["applicant"]["organisation_name"] + " "
    b = parse(json.dumps(other, indent=2).encode())
    later = sample()
    later["submitted_at"] = "2019-10-01T10:00:01+02:00"
    c = parse(later)
    assert isinstance(a, Application) and isinstance(b, Application) and isinstance(c, Application)
    assert body_fingerprint(a) == body_fingerprint(b)
    assert body_fingerprint(a) != body_fingerprint(c)
