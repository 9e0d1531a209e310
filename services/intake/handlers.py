"""Intake's use case: receive one submission, from HTTP or Kafka, exactly once per application id."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from pydantic import ValidationError

from services.intake import repository
from services.intake.domain import (
    DEFAULT_POLICY,
    Invalid,
    SubmissionPolicy,
    body_fingerprint,
    parse_structured,
    parse_submission,
)
from shared.delivery import Cause, UnitOfWork
from shared.events import Application, ApplicationReceived, ApplicationRejected, FieldError

Channel = Literal["http", "kafka"]
#: How the submission arrived: a bare JSON body (Kafka, or HTTP without CloudEvents), a CloudEvent
#: in structured mode (the body is the event), or in binary mode (attributes in headers).
Envelope = Literal["plain", "structured", "binary"]


@dataclass(frozen=True)
class Outcome:
    status: Literal["received", "duplicate", "rejected", "conflict"]
    application_id: str | None
    errors: list[FieldError]
    rejection_id: str | None = None
    conflicts_with: str | None = None


@dataclass(frozen=True)
class Submission:
    """One submission as a channel read it."""

    raw: bytes
    envelope: Envelope = "plain"
    attribute_errors: list[FieldError] = field(default_factory=list)  # binary mode: the ce-* headers'


async def receive(
    uow: UnitOfWork,
    raw: bytes | Submission,
    channel: Channel,
    source_reference: str | None = None,
    *,
    policy: SubmissionPolicy = DEFAULT_POLICY,
    cause: Cause = None,
) -> Outcome:
    """`cause`: the consumed record the submission came in (Kafka), for the answer's correlation and trace."""
    submission = raw if isinstance(raw, Submission) else Submission(raw)
    now = datetime.now(UTC)
    if submission.envelope == "structured":
        parsed = parse_structured(submission.raw, policy, now)
    else:
        parsed = parse_submission(submission.raw, policy, now, prior=submission.attribute_errors)
    if isinstance(parsed, Invalid):
        return await _reject(uow, channel, source_reference, parsed.errors, parsed, cause)
    return await _accept(uow, parsed, channel, source_reference, cause)


async def reject_unreadable(uow: UnitOfWork, errors: list[FieldError], source_reference: str, *, cause: Cause = None) -> Outcome:
    """A Kafka record that is not a readable CloudEvent: rejected with the cause, nothing of it echoed."""
    return await _reject(uow, "kafka", source_reference, errors, Invalid(errors, None, None, None), cause)


def _same(stored_fingerprint: str, stored_body: object, fingerprint: str) -> bool:
    """The stored application is this one: by the stored fingerprint or, when that was computed by an
    earlier version of `body_fingerprint`, by the stored body fingerprinted anew."""
    if stored_fingerprint == fingerprint:
        return True
    try:
        return body_fingerprint(Application.model_validate(stored_body)) == fingerprint
    except ValidationError:
        return False


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
    if _same(*stored, fingerprint):
        return Outcome("duplicate", application.application_id, [])
    return await _conflict(uow, application, channel, source_reference, cause)


async def _conflict(
    uow: UnitOfWork, application: Application, channel: Channel, source_reference: str | None, cause: Cause
) -> Outcome:
    """A different body under an id already taken: the *resubmission* is rejected, under its own
    rejection id, without the taken id as its application id and without the contact it names."""
    error = FieldError(
        loc=["application_id"],
        type="application_id_conflict",
        message="an application with this id was already received with different content",
    )
    rejection = ApplicationRejected(
        rejection_id=str(uuid.uuid4()),
        rejected_at=datetime.now(UTC),
        channel=channel,
        source_reference=source_reference,
        reason="conflict",
        errors=[error],
        language=application.language,
        conflicts_with=application.application_id,
    )
    await repository.insert_rejection(uow.conn, rejection)
    await uow.publish(rejection, cause=cause)
    return Outcome("conflict", None, [error], rejection.rejection_id, application.application_id)


async def _reject(
    uow: UnitOfWork, channel: Channel, source_reference: str | None, errors: list[FieldError], invalid: Invalid, cause: Cause
) -> Outcome:
    rejection = ApplicationRejected(
        rejection_id=str(uuid.uuid4()),
        application_id=invalid.application_id,
        rejected_at=datetime.now(UTC),
        channel=channel,
        source_reference=source_reference,
        reason="invalid",
        errors=errors,
        language=invalid.language,  # type: ignore[arg-type]  # read only when a known Language
        contact=invalid.contact,
    )
    await repository.insert_rejection(uow.conn, rejection)
    await uow.publish(rejection, cause=cause)
    return Outcome("rejected", invalid.application_id, errors, rejection.rejection_id)
