"""The event contracts: money, validation errors, keys, CloudEvents headers."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from shared.cloudevents import attributes_for, from_headers, to_headers
from shared.events import EVENTS, CeilingReset, FundingRequest
from shared.money import Money
from shared.topics import TOPIC_SPECS, Topic

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("amount", "error_type"),
    [
        (-1, "money_negative"),
        (1.5, "money_fractional"),
        (100.0, "money_type"),
        ("100", "money_type"),
        (True, "money_type"),
        (None, "int_type"),
    ],
)
def test_money_refuses_what_is_not_whole_non_negative_minor_units(amount: object, error_type: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Money.model_validate({"amount_minor": amount, "currency": "EUR"})
    assert caught.value.errors()[0]["type"] == error_type


def test_money_never_adds_two_currencies() -> None:
    assert Money.of_major(5, "EUR") + Money(amount_minor=1, currency="EUR") == Money(amount_minor=501, currency="EUR")
    with pytest.raises(ValueError, match="cannot combine EUR with SEK"):
        Money.of_major(5, "EUR") + Money.of_major(5, "SEK")
    assert str(Money(amount_minor=50_000_000, currency="EUR")) == "EUR 500,000.00"


def test_a_funding_request_keeps_one_currency_and_distinct_years() -> None:
    year = {
        "year": 2020,
        "eligible_costs": {"amount_minor": 1, "currency": "EUR"},
        "requested": {"amount_minor": 1, "currency": "SEK"},
    }
    with pytest.raises(ValidationError, match="request's currency EUR"):
        FundingRequest.model_validate({"currency": "EUR", "years": [year]})
    same = {**year, "requested": {"amount_minor": 1, "currency": "EUR"}}
    with pytest.raises(ValidationError, match="only once"):
        FundingRequest.model_validate({"currency": "EUR", "years": [same, same]})


def test_every_event_has_a_topic_with_settings_and_a_versioned_type() -> None:
    assert len({e.cloudevents_type() for e in EVENTS}) == len(EVENTS)
    for event in EVENTS:
        assert event.topic in TOPIC_SPECS
        assert event.topic.value.endswith(f".v{event.version}")
        assert event.cloudevents_type().endswith(f".v{event.version}")
        assert event.model_config.get("frozen") is True
    assert set(TOPIC_SPECS) == set(Topic)


def test_cloudevents_binary_headers_round_trip() -> None:
    reset = CeilingReset(reset_id="ttc/2015", programme="ttc", budget_year=2015, opened_at=datetime(2015, 1, 1, tzinfo=UTC))
    attrs = attributes_for(reset, source="/clustergrants/budget", correlation_id="c-1", causation_id="e-0")
    headers = to_headers(attrs)
    names = [n for n, _ in headers]
    assert names[:4] == ["ce_specversion", "ce_id", "ce_source", "ce_type"]
    assert dict(headers)["content-type"] == b"application/json"
    assert dict(headers)["ce_subject"] == b"ttc"  # keyed and subject by programme
    assert reset.key() == "ttc"
    assert from_headers(headers) == attrs
    assert from_headers([("ce_id", b"x")]) is None  # incomplete: not a CloudEvent
    assert json.loads(reset.model_dump_json())["budget_year"] == 2015
