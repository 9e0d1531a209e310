"""Reading consumed records from raw bytes: every odd key, header and value gets its own reason."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaConnectionError

from shared.cloudevents import attributes_for, to_headers
from shared.events import AssessmentSubmitted, CeilingReset, EligibilityDecided
from shared.records import Contract, Delivery, Rejected, ResilientConsumer, read, unreadable_record
from shared.topics import Topic

pytestmark = pytest.mark.unit

RESET = CeilingReset(reset_id="ttc/2020", programme="ttc", budget_year=2020, opened_at=datetime(2020, 1, 1, tzinfo=UTC))
BUDGET = "/clustergrants/budget"


def record(
    value: bytes | None,
    headers: Sequence[tuple[str, bytes | None]],
    key: bytes | None = b"ttc",
    topic: str = "t.clustergrants.budget.ceiling-reset.v1",
) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(topic, 2, 41, 0, 0, key, value, None, len(key or b""), len(value or b""), headers)


def binary(event: CeilingReset = RESET, source: str = BUDGET, event_id: str = "e-1") -> list[tuple[str, bytes | None]]:
    return list(to_headers(attributes_for(event, source=source, event_id=event_id)))


def read_reset(
    value: bytes | None, headers: Sequence[tuple[str, bytes | None]], key: bytes | None = b"ttc"
) -> Delivery[Any] | Rejected:
    return read(record(value, headers, key), Contract.of(CeilingReset))


def reason(result: Delivery[Any] | Rejected) -> str:
    assert isinstance(result, Rejected), f"expected a rejection, got {result!r}"
    return result.reason


def test_a_binary_mode_event_is_read_with_its_identity() -> None:
    result = read_reset(RESET.model_dump_json().encode(), binary())
    assert isinstance(result, Delivery)
    assert result.event == RESET and result.identity == (BUDGET, "e-1") and str(result.position).endswith(":2:41")


def test_a_structured_mode_event_is_read_like_a_binary_one() -> None:
    envelope = {
        "specversion": "1.0",
        "id": "e-2",
        "source": BUDGET,
        "type": CeilingReset.cloudevents_type(),
        "time": "2020-01-01T00:00:00Z",
        "datacontenttype": "application/json",
        "data": RESET.model_dump(mode="json"),
    }
    headers = [("content-type", b"application/cloudevents+json; charset=utf-8")]
    result = read_reset(json.dumps(envelope).encode(), headers)
    assert isinstance(result, Delivery) and result.event == RESET and result.identity == (BUDGET, "e-2")
    base64_envelope = {k: v for k, v in envelope.items() if k != "data"} | {
        "data_base64": base64.b64encode(RESET.model_dump_json().encode()).decode()
    }
    result = read_reset(json.dumps(base64_envelope).encode(), headers)
    assert isinstance(result, Delivery) and result.event == RESET


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ([("ce_id", b"\xff\xfe")], "header_not_utf8"),
        ([("ce_id", b"e-1")], "header_duplicated"),
        ([("CE_ID", b"e-9")], "header_duplicated"),
        ([("content-type", b"text/plain")], "content_type_unsupported"),
        ([("content-type", b"application/json"), ("content-type", b"application/json")], "header_duplicated"),
    ],
)
def test_ambiguous_or_unreadable_headers_are_refused(headers: list[tuple[str, bytes | None]], expected: str) -> None:
    base = [h for h in binary() if h[0] != "content-type" or not any(n == "content-type" for n, _ in headers)]
    base = [h for h in base if not (h[0] == "ce_id" and expected == "header_not_utf8")]
    assert reason(read_reset(RESET.model_dump_json().encode(), base + headers)) == expected


def test_headers_that_are_not_ours_are_left_alone_even_when_not_utf8() -> None:
    result = read_reset(RESET.model_dump_json().encode(), [*binary(), ("x-portal-note", b"\xff\xfe"), ("x-empty", None)])
    assert isinstance(result, Delivery)


@pytest.mark.parametrize(
    ("attribute", "value", "expected"),
    [
        ("ce_specversion", b"0.3", "specversion_unsupported"),
        ("ce_source", b"not a uri", "source_not_uri_reference"),
        ("ce_source", b"/bad%zzescape", "source_not_uri_reference"),
        ("ce_id", b"", "attribute_missing"),
        ("ce_id", b"x" * 300, "attribute_too_long"),
        ("ce_id", b"line\nbreak", "attribute_control_character"),
        ("ce_subject", "\u202eevil".encode(), "attribute_control_character"),
        ("ce_time", b"yesterday", "time_not_rfc3339"),
        ("ce_time", b"2020-02-30T00:00:00Z", "time_not_rfc3339"),
        ("ce_time", b"2020-01-01T00:00:00", "time_not_rfc3339"),
    ],
)
def test_attributes_are_checked_as_cloudevents_states_them(attribute: str, value: bytes, expected: str) -> None:
    headers = [(n, v) for n, v in binary() if n != attribute] + [(attribute, value)]
    assert reason(read_reset(RESET.model_dump_json().encode(), headers)) == expected


def test_a_record_without_cloudevents_attributes_has_no_identity_but_its_position() -> None:
    result = read_reset(RESET.model_dump_json().encode(), [])
    assert reason(result) == "attribute_missing"
    assert isinstance(result, Rejected)
    assert result.identity == ("/clustergrants/kafka/t.clustergrants.budget.ceiling-reset.v1", "2:41")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, "value_missing"),
        (b"\xff\xfe not json", "data_invalid"),
        (b'{"reset_id": "ttc/2020"}', "data_invalid"),
    ],
)
def test_bodies_that_are_not_the_event_are_refused(value: bytes | None, expected: str) -> None:
    assert reason(read_reset(value, binary())) == expected


def test_structured_mode_refuses_duplicate_keys_ambiguity_and_junk() -> None:
    headers = [("content-type", b"application/cloudevents+json")]
    duplicate = b'{"specversion":"1.0","id":"a","id":"b","source":"/x","type":"t","data":{}}'
    assert reason(read_reset(duplicate, headers)) == "json_duplicate_key"
    assert reason(read_reset(b"[1, 2]", headers)) == "envelope_not_object"
    assert reason(read_reset(b"{", headers)) == "json_invalid"
    assert reason(read_reset(b"{}", [*headers, ("ce_id", b"x")])) == "mode_ambiguous"
    both = json.dumps({"specversion": "1.0", "id": "a", "source": BUDGET, "type": "t", "data": {}, "data_base64": ""})
    assert reason(read_reset(both.encode(), headers)) == "data_ambiguous"
    nested = b'{"specversion":"1.0","id":"a","source":"/x","type":"t","data":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    assert reason(read_reset(nested, headers)) == "json_invalid"


def test_only_the_producer_a_topic_names_may_publish_to_it() -> None:
    value = RESET.model_dump_json().encode()
    attacker = read_reset(value, binary(source="/attacker"))
    assert reason(attacker) == "source_not_allowed" and isinstance(attacker, Rejected) and attacker.kind == "not_allowed"
    impostor = read_reset(value, binary(source="/clustergrants/eligibility"))
    assert reason(impostor) == "source_not_allowed"
    assert isinstance(read_reset(value, binary(source=BUDGET)), Delivery)


def test_an_event_of_another_type_is_not_acted_on() -> None:
    headers = [(n, v) for n, v in binary() if n != "ce_type"] + [("ce_type", EligibilityDecided.cloudevents_type().encode())]
    assert reason(read_reset(RESET.model_dump_json().encode(), headers)) == "type_not_allowed"


def test_a_service_event_must_be_keyed_as_its_contract_says() -> None:
    assert reason(read_reset(RESET.model_dump_json().encode(), binary(), key=b"vlaio")) == "key_mismatch"
    assert reason(read_reset(RESET.model_dump_json().encode(), binary(), key=None)) == "key_mismatch"


def test_portals_may_name_themselves_but_not_as_a_service() -> None:
    assessment = AssessmentSubmitted(
        application_id="A-1",
        assessment_id="S-1",
        call_id="call",
        assessor_id="x",
        scores={"fit": 3},
        submitted_at=datetime(2020, 1, 1, tzinfo=UTC),
    )
    contract = Contract.of(AssessmentSubmitted)

    def as_from(source: str) -> Delivery[Any] | Rejected:
        headers = list(to_headers(attributes_for(assessment, source=source, event_id="42")))
        return read(record(assessment.model_dump_json().encode(), headers, key=None, topic="t.a"), contract)

    portal_a, portal_b = as_from("portal-a"), as_from("https://portal-b.example/submit")
    assert isinstance(portal_a, Delivery) and isinstance(portal_b, Delivery)  # a portal's key is its own business
    assert portal_a.identity != portal_b.identity  # same id, two sources: two events
    assert isinstance(as_from("/clustergrants/intake"), Delivery)  # intake relays assessments posted over HTTP
    assert reason(as_from("/clustergrants/budget")) == "source_not_allowed"
    assert reason(as_from("/clustergrants/kafka/t.a")) == "source_not_allowed"


def test_a_record_the_client_could_not_decode_is_rejected_by_position() -> None:
    bad = unreadable_record(TopicPartition(Topic.CEILING_RESET.value, 1), 9, UnicodeDecodeError("utf-8", b"\xff", 0, 1, "x"))
    result = read(bad, Contract.of(CeilingReset))
    assert reason(result) == "record_unreadable"
    assert isinstance(result, Rejected) and result.identity[1] == "1:9"


async def test_a_broker_error_while_lingering_hands_on_what_was_read_instead_of_dropping_it() -> None:
    # What one read returned has moved the consumer's positions past it: dropping it with the
    # exception would skip those records for good once a later batch commits.
    tp = TopicPartition("t.clustergrants.budget.ceiling-reset.v1", 0)
    first = record(b"{}", [])
    reads: list[Any] = [{tp: [first]}, KafkaConnectionError("broker gone")]

    async def scripted_read(*_: Any) -> Any:
        step = reads.pop(0)
        if isinstance(step, Exception):
            raise step
        return step

    consumer = ResilientConsumer(linger_ms=1_000)
    consumer._read = scripted_read  # type: ignore[method-assign, assignment]
    try:
        assert await consumer.getmany(max_records=10) == {tp: [first]}
        assert reads == []  # the second read was made, and failed
    finally:
        await consumer.stop()
