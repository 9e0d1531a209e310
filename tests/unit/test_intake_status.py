"""Intake's status read model: revisions ordered by number whatever order they arrived in."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from services.intake.status import assemble, pending

pytestmark = pytest.mark.unit

AT = datetime(2026, 12, 1, 9, tzinfo=UTC)


def decided(revision: int, outcome: str, event_id: str, supersedes: str | None, arrived: int) -> dict[str, Any]:
    criterion = {"criterion": "applicant_sme", "outcome": "not_decidable" if outcome == "needs_review" else "passed",
                 "message_key": "k", "decided_by": "rules" if revision == 1 else "officer:k-1"}  # fmt: skip
    body = {"scheme": "ttc.innovation-voucher", "decided_at": AT.isoformat(), "outcome": outcome,
            "parameter_version": "v", "criteria": [criterion], "supersedes": supersedes,
            "decided_by": criterion["decided_by"], "revision": revision}  # fmt: skip
    return {"event_id": event_id, "kind": "decided", "revision": revision, "at": AT.replace(minute=arrived), "body": body}


RECEIVED = {"application_id": "A-1", "scheme": "ttc.innovation-voucher", "channel": "http", "received_at": AT}


def test_a_revision_delivered_before_the_one_it_supersedes_is_still_the_latest() -> None:
    events = [decided(2, "ineligible", "e2", "e1", arrived=1), decided(1, "needs_review", "e1", None, arrived=2)]
    answer = assemble(RECEIVED, events)
    assert [d.revision for d in answer.decisions] == [1, 2]
    assert answer.decisions[-1].outcome == "ineligible" and answer.decisions[-1].supersedes == "e1"
    assert answer.status == "decided" and answer.grant is None


def test_a_commitment_shows_only_while_the_latest_revision_is_eligible() -> None:
    committed = {"event_id": "g", "kind": "committed", "revision": None, "at": AT.replace(minute=3),
                 "body": {"grant_id": "G-1", "grant": {"schedule": [{"budget_year": 2026,
                          "amount": {"amount_minor": 5, "currency": "EUR"}}]}}}  # fmt: skip
    eligible = [decided(1, "needs_review", "e1", None, 1), decided(2, "eligible", "e2", "e1", 2), committed]
    assert assemble(RECEIVED, eligible).status == "committed"
    revised = [*eligible, decided(3, "ineligible", "e3", "e2", 4)]
    assert assemble(RECEIVED, revised).status == "decided"


def test_pending_reviews_list_only_the_open_criteria() -> None:
    [one] = pending([{"application_id": "A-1", "revision": 1, "body": decided(1, "needs_review", "e1", None, 1)["body"]}])
    assert [c.criterion for c in one.criteria] == ["applicant_sme"]
