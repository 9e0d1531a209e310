"""Intake's use case: receive one submission, from HTTP or Kafka, exactly once per application id."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from services.intake import repository
from services.intake.domain import Invalid, body_fingerprint, parse_submission
from shared.delivery import Cause, UnitOfWork
from shared.events import Application, ApplicationReceived, ApplicationRejected, FieldError

Channel = Literal["http", "kafka"]


@dataclass(frozen=True)
class Outcome:
    status: Literal["received", "duplicate", "rejected"]
    application_id: str | None
    errors: list[FieldError]
    rejection_id: str | None = None


async def receive(
    uow: UnitOfWork, raw: bytes, channel: Channel, source_reference: str | None = None, *, cause: Cause = None
) -> Outcome:
    parsed = parse_submission(raw)
    if isinstance(parsed, Invalid):
        return await _reject(uow, channel, source_reference, "invalid", parsed.errors, parsed, cause)
    return await _accept(uow, parsed, channel, source_reference, cause)


async def reject_unreadable(uow: UnitOfWork, errors: list[FieldError], source_reference: str, *, cause: Cause = None) -> Outcome:
    """A Kafka record that is not a readable CloudEvent: rejected with the cause, nothing of it echoed."""
    return await _reject(uow, "kafka", source_reference, "invalid", errors, Invalid(errors, None, None, None), cause)


async def _accept(
    uow: UnitOfWork, application: Application, channel: Channel, source_reference: str | None, cause: Cause
) -> Outcome:
    now = datetime.now(UTC)
    fingerprint = body_fingerprint(application)
    stored = await repository.insert_application(uow.conn, application, channel, fingerprint, now)
    if stored is None:
        await uow.publish(
            ApplicationReceived(
                application_id=application.application_id, received_at=now, channel=channel, application=application
            ),
            cause=cause,
        )
        return Outcome("received", application.application_id, [])
    if stored == fingerprint:
        return Outcome("duplicate", application.application_id, [])
    error = FieldError(
        loc=["application_id"],
        type="application_id_conflict",
        message="an application with this id was already received with different content",
    )
    invalid = Invalid([error], application.application_id, application.language, application.contact)
    return await _reject(uow, channel, source_reference, "conflict", [error], invalid, cause)


async def _reject(
    uow: UnitOfWork,
    channel: Channel,
    source_reference: str | None,
    reason: Literal["invalid", "conflict"],
    errors: list[FieldError],
    invalid: Invalid,
    cause: Cause,
) -> Outcome:
    rejection = ApplicationRejected(
        rejection_id=str(uuid.uuid4()),
        application_id=invalid.application_id,
        rejected_at=datetime.now(UTC),
        channel=channel,
        source_reference=source_reference,
        reason=reason,
        errors=errors,
        language=invalid.language,  # type: ignore[arg-type]
        contact=invalid.contact,
    )
    await repository.insert_rejection(uow.conn, rejection)
    await uow.publish(rejection, cause=cause)
    return Outcome("rejected", invalid.application_id, errors, rejection.rejection_id)
