"""Test events with distinctive personal data, and publishing them as another service would."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime

from shared.cloudevents import attributes_for, to_headers
from shared.events import (
    ApplicationRejected,
    CeilingReset,
    Contact,
    CriterionResult,
    EligibilityDecided,
    Event,
    FieldError,
    Figure,
    FundShare,
    GrantCommitted,
    GrantRefused,
    GrantReleased,
    ProposedGrant,
    Recipient,
    ReleasedAmount,
    ScheduledAmount,
)
from shared.money import Money
from shared.topics import TOPIC_SPECS, service_source, topic_name
from tests.kafka_tools import publish_raw

NOW = datetime(2024, 3, 1, 9, 30, tzinfo=UTC)


def person(language: str, name: str, email: str, org: str) -> Recipient:
    # (ignore below) tests pass languages as str
    return Recipient(language=language, contact=Contact(name=name, email=email), organisation_name=org)  # type: ignore[arg-type]


def ineligible(app_id: str, who: Recipient) -> EligibilityDecided:
    return EligibilityDecided(
        application_id=app_id,
        scheme="ttc.innovation-voucher",
        decided_at=NOW,
        reference_date=date(2012, 4, 2),
        time_zone="Europe/Brussels",
        outcome="ineligible",
        parameter_version="2012-01-01",
        recipient=who,
        criteria=[
            CriterionResult(criterion="first_voucher", outcome="passed", message_key="ttc.voucher.first"),
            CriterionResult(
                criterion="voucher_amount",
                outcome="failed",
                message_key="ttc.voucher.amount_exceeded",
                figures={
                    "requested": Figure(unit="money", value=500_001, currency="EUR"),
                    "limit": Figure(unit="money", value=500_000, currency="EUR"),
                },
            ),
        ],
    )


def vlaio_grant() -> ProposedGrant:
    return ProposedGrant(
        programme="vlaio",
        instrument="coordination-subsidy",
        currency="EUR",
        schedule=[
            ScheduledAmount(budget_year=2020, amount=Money(amount_minor=40_000_000, currency="EUR")),
            ScheduledAmount(budget_year=2021, amount=Money(amount_minor=50_000_000, currency="EUR")),
        ],
        fund_shares=[FundShare(fund="agency", numerator=1, denominator=1)],
    )


def eligible_with_grant(app_id: str, who: Recipient) -> EligibilityDecided:
    return EligibilityDecided(
        application_id=app_id,
        scheme="vlaio.spearhead-cluster",
        decided_at=NOW,
        reference_date=date(2019, 10, 1),
        time_zone="Europe/Brussels",
        outcome="eligible",
        parameter_version="2019",
        recipient=who,
        proposed_grant=vlaio_grant(),
        criteria=[
            CriterionResult(
                criterion="call_open",
                outcome="passed",
                message_key="vlaio.call.open",
                figures={"reference_date": Figure(unit="date", value="2019-10-01")},
            )
        ],
    )


def committed(app_id: str, who: Recipient) -> GrantCommitted:
    return GrantCommitted(
        application_id=app_id,
        grant_id=str(uuid.uuid4()),
        committed_at=NOW,
        scheme="vlaio.spearhead-cluster",
        grant=vlaio_grant(),
        recipient=who,
    )


def refused(app_id: str, who: Recipient) -> GrantRefused:
    return GrantRefused(
        application_id=app_id,
        refused_at=NOW,
        scheme="nic.cluster",
        limit="pot:nic/agency",
        message_key="budget.pot_exhausted",
        budget_year=2024,
        recipient=who,
        available=Money(amount_minor=100_000_000, currency="NOK"),
        requested=Money(amount_minor=250_000_000, currency="NOK"),
    )


def rejected(app_id: str, name: str, email: str) -> ApplicationRejected:
    return ApplicationRejected(
        rejection_id=str(uuid.uuid4()),
        application_id=app_id,
        rejected_at=NOW,
        channel="http",
        reason="invalid",
        language="sv",
        contact=Contact(name=name, email=email),
        errors=[FieldError(loc=["submitted_at"], type="missing", message="Field required")],
    )


def released(commitment: GrantCommitted, reason: str) -> GrantReleased:
    """The budget returning 2021's 500,000.00 of `commitment` (vlaio_grant's second year)."""
    return GrantReleased.model_validate(
        {
            "application_id": commitment.application_id,
            "grant_id": commitment.grant_id,
            "released_at": NOW,
            "scheme": commitment.scheme,
            "programme": commitment.grant.programme,
            "reason": reason,
            "released": [ReleasedAmount(budget_year=2021, fund="agency", amount=Money(amount_minor=50_000_000, currency="EUR"))],
            "remaining": [ScheduledAmount(budget_year=2020, amount=Money(amount_minor=40_000_000, currency="EUR"))],
        }
    )


def reset(programme: str, year: int) -> CeilingReset:
    return CeilingReset(reset_id=f"{programme}/{year}", programme=programme, budget_year=year, opened_at=NOW)


async def publish(bootstrap: str, prefix: str, event: Event, event_id: str | None = None) -> str:
    """Publish `event` in CloudEvents binary mode, as the producing service's relay would; returns its id."""
    producer = TOPIC_SPECS[event.topic].producers[0]
    attributes = attributes_for(event, source=service_source(producer), event_id=event_id)
    await publish_raw(
        bootstrap, topic_name(event.topic, prefix), event.model_dump_json().encode(), event.key().encode(), to_headers(attributes)
    )
    return attributes.id
