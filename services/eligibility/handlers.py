"""Eligibility's use case: decide a received application once, and say why criterion by criterion."""

from __future__ import annotations

from datetime import UTC, datetime

from services.eligibility import repository
from services.eligibility.domain import evaluate
from services.eligibility.parameters import ParameterStore
from shared.delivery import Cause, UnitOfWork
from shared.events import ApplicationReceived, EligibilityDecided, Recipient


def decide(received: ApplicationReceived, parameters: ParameterStore, now: datetime | None = None) -> EligibilityDecided:
    application = received.application
    decision = evaluate(application, parameters)
    return EligibilityDecided(
        application_id=application.application_id,
        scheme=application.scheme,
        decided_at=now or datetime.now(UTC),
        reference_date=decision.reference_date,
        time_zone=decision.time_zone,
        outcome=decision.outcome,
        parameter_version=decision.parameter_version,
        criteria=list(decision.criteria),
        proposed_grant=decision.proposed_grant,
        beneficiary_id=decision.beneficiary_id,
        recipient=Recipient(
            language=application.language,
            contact=application.contact,
            organisation_name=application.applicant.organisation_name,
        ),
    )


async def on_application_received(
    uow: UnitOfWork, received: ApplicationReceived, parameters: ParameterStore, *, cause: Cause = None
) -> str | None:
    """Store and decide the application; returns the outcome, or None if it was decided before."""
    await repository.store_application(uow.conn, received.application)
    decided = decide(received, parameters)
    if not await repository.store_decision(uow.conn, decided):
        return None
    await uow.publish(decided, cause=cause)
    return decided.outcome
