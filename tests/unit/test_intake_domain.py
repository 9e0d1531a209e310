"""Intake's validation: every bad input is a specific, machine-readable rejection, never a crash."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.intake.domain import Invalid, body_fingerprint, parse_submission
from shared.events import Application

pytestmark = pytest.mark.unit

SAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "local" / "samples" / "vlaio-spearhead-2019.json"


def sample() -> dict:  # type: ignore[type-arg]
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
def test_each_defect_gets_its_own_error(mutate, loc: tuple[object, ...], error_type: str) -> None:  # type: ignore[no-untyped-def]
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
