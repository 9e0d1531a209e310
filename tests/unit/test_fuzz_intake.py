"""Property-based fuzzing of intake's validation (hypothesis): any mutation of any scheme's sample, valid or
invalid, in structure, type, value or bytes, is an application or a specific rejection, and a rejection is
always a valid ApplicationRejected event. The same mutators drive bench/fuzz_intake.py against the services."""

from __future__ import annotations

import json
import random
import re
import uuid
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.fuzz_payloads import DEEP, good, payload
from services.intake.domain import Invalid, parse_submission
from shared.events import Application, ApplicationReceived, ApplicationRejected

pytestmark = pytest.mark.unit

ERROR_TYPE = re.compile(r"^[a-z][a-z0-9_.]*$")


def assert_application_or_specific_rejection(raw: bytes) -> None:
    result = parse_submission(raw)
    if isinstance(result, Application):
        # A valid one travels on as an ApplicationReceived and reads back the same.
        event = ApplicationReceived(
            application_id=result.application_id, received_at=datetime.now(UTC), channel="kafka", application=result
        )
        assert ApplicationReceived.model_validate_json(event.model_dump_json()) == event
        return
    assert isinstance(result, Invalid)
    assert result.errors, "a rejection names at least one error"
    for error in result.errors:
        assert ERROR_TYPE.match(error.type), error
        assert isinstance(error.loc, list) and error.message
    # ... and is a valid rejection event (what intake publishes and notify reads).
    rejection = ApplicationRejected(
        rejection_id=str(uuid.uuid4()),
        application_id=result.application_id,
        rejected_at=datetime.now(UTC),
        channel="kafka",
        source_reference="t:0:1",
        reason="invalid",
        errors=result.errors,
        language=result.language,  # type: ignore[arg-type]  # intake reads only a known Language, or None
        contact=result.contact,
    )
    assert ApplicationRejected.model_validate_json(rejection.model_dump_json()) == rejection


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.randoms(use_true_random=False), st.text(min_size=1, max_size=64))
def test_any_mutated_sample_is_an_application_or_a_specific_rejection(rng: random.Random, app_id: str) -> None:
    assert_application_or_specific_rejection(payload(rng, app_id, known_bugs=False))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000))
def test_any_bytes_are_an_application_or_a_specific_rejection(raw: bytes) -> None:
    assert_application_or_specific_rejection(raw)


def test_ten_thousand_seeded_payloads_never_crash_validation() -> None:
    rng = random.Random(20261123)
    kinds = {"valid": 0, "rejected": 0}
    for i in range(10_000):
        raw = payload(rng, f"FUZZ-{i}", known_bugs=True)
        assert_application_or_specific_rejection(raw)
        kinds["valid" if isinstance(parse_submission(raw), Application) else "rejected"] += 1
    assert kinds["valid"] > 100 and kinds["rejected"] > 5000, kinds  # the mix exercises both paths


def test_the_good_follower_is_valid() -> None:
    assert isinstance(parse_submission(good("FUZZ-GOOD")), Application)


@pytest.mark.parametrize("raw", DEEP[:1])
def test_deeply_nested_json_is_a_specific_rejection(raw: bytes) -> None:
    assert_application_or_specific_rejection(raw)
    assert callable(json.dumps)  # keeps the import used when the bug is fixed
