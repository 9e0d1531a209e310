"""Intake's use case: receive one submission, from HTTP or Kafka, exactly once per application id."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
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
from shared.events import Application, ApplicationReceived, ApplicationRejected, Event, FieldError

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
    portal: str | None = None  # who submitted: the bearer token's portal (HTTP) or the CloudEvents source (Kafka)


@dataclass(frozen=True)
class Item:
    """One submission of a batch: what the channel read, where it came from, and the consumed record."""

    submission: Submission
    source_reference: str | None = None
    cause: Cause = None


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
    return (await receive_all(uow, [Item(submission, source_reference, cause)], channel, policy=policy))[0]


async def receive_all(
    uow: UnitOfWork, items: Sequence[Item], channel: Channel, *, policy: SubmissionPolicy = DEFAULT_POLICY
) -> list[Outcome]:
    """Receive a batch of submissions (a consumed batch, or one HTTP request) in the unit of work:
    one statement stores the new applications, one more reads the stored body of those whose id was
    taken, one stores the batch's rejections; the answers are published in the batch's order.

    Within the batch the first submission of an id is the one received, as if one at a time: a later
    one with the same body is a duplicate, one with another body a conflict."""
    now = datetime.now(UTC)
    parsed: list[tuple[Item, Application | Invalid]] = []
    for item in items:
        submission = item.submission
        if submission.envelope == "structured":
            parsed.append((item, parse_structured(submission.raw, policy, now)))
        else:
            parsed.append((item, parse_submission(submission.raw, policy, now, prior=submission.attribute_errors)))
    fingerprints: dict[int, str] = {}
    first: dict[str, int] = {}  # application id -> index of its first submission in the batch
    new: list[repository.NewApplication] = []
    for n, (item, result) in enumerate(parsed):
        if isinstance(result, Invalid):
            continue
        fingerprints[n] = body_fingerprint(result)
        if result.application_id not in first:
            first[result.application_id] = n
            new.append(repository.NewApplication(result, channel, fingerprints[n], now, _portal_of(item)))
    inserted = await repository.insert_applications(uow.conn, new)
    taken = await repository.stored_bodies(uow.conn, [a for a in first if a not in inserted])
    outcomes: list[Outcome] = []
    rejections: list[ApplicationRejected] = []
    answers: list[tuple[Event, Cause]] = []
    for n, (item, result) in enumerate(parsed):
        if isinstance(result, Invalid):
            rejection = _rejection(channel, item.source_reference, result)
            rejections.append(rejection)
            answers.append((rejection, item.cause))
            outcomes.append(Outcome("rejected", result.application_id, result.errors, rejection.rejection_id))
            continue
        app_id = result.application_id
        if first[app_id] == n and app_id in inserted:
            received = ApplicationReceived(application_id=app_id, received_at=now, channel=channel, application=result)
            answers.append((received, item.cause))
            outcomes.append(Outcome("received", app_id, []))
            continue
        # The id was taken before this batch, or by an earlier submission of this batch.
        same = (
            fingerprints[first[app_id]] == fingerprints[n]
            if app_id in inserted
            else app_id in taken and _same(*taken[app_id], fingerprints[n])
        )
        if same:
            outcomes.append(Outcome("duplicate", app_id, []))
            continue
        conflict = _conflict(result, channel, item.source_reference)
        rejections.append(conflict)
        answers.append((conflict, item.cause))
        assert conflict.errors and conflict.conflicts_with is not None
        outcomes.append(Outcome("conflict", None, conflict.errors, conflict.rejection_id, app_id))
    await repository.insert_rejections(uow.conn, rejections)
    for event, cause in answers:
        await uow.publish(event, cause=cause)
    return outcomes


def _portal_of(item: Item) -> str | None:
    """Who submitted: the HTTP bearer token's portal, else the consumed record's CloudEvents source."""
    if item.submission.portal is not None:
        return item.submission.portal
    cause = item.cause
    return cause.attributes.source if cause is not None and cause.attributes is not None else None


async def reject_unreadable(uow: UnitOfWork, errors: list[FieldError], source_reference: str, *, cause: Cause = None) -> Outcome:
    """A Kafka record that is not a readable CloudEvent: rejected with the cause, nothing of it echoed."""
    rejection = _rejection("kafka", source_reference, Invalid(errors, None, None, None))
    await repository.insert_rejections(uow.conn, [rejection])
    await uow.publish(rejection, cause=cause)
    return Outcome("rejected", None, errors, rejection.rejection_id)


def _same(stored_fingerprint: str, stored_body: object, fingerprint: str) -> bool:
    """The stored application is this one: by the stored fingerprint or, when that was computed by an
    earlier version of `body_fingerprint`, by the stored body fingerprinted anew."""
    if stored_fingerprint == fingerprint:
        return True
    try:
        return body_fingerprint(Application.model_validate(stored_body)) == fingerprint
    except ValidationError:
        return False


def _conflict(application: Application, channel: Channel, source_reference: str | None) -> ApplicationRejected:
    """A different body under an id already taken: the *resubmission* is rejected, under its own
    rejection id, without the taken id as its application id and without the contact it names."""
    error = FieldError(
        loc=["application_id"],
        type="application_id_conflict",
        message="an application with this id was already received with different content",
    )
    return ApplicationRejected(
        rejection_id=str(uuid.uuid4()),
        rejected_at=datetime.now(UTC),
        channel=channel,
        source_reference=source_reference,
        reason="conflict",
        errors=[error],
        language=application.language,
        conflicts_with=application.application_id,
    )


def _rejection(channel: Channel, source_reference: str | None, invalid: Invalid) -> ApplicationRejected:
    return ApplicationRejected(
        rejection_id=str(uuid.uuid4()),
        application_id=invalid.application_id,
        rejected_at=datetime.now(UTC),
        channel=channel,
        source_reference=source_reference,
        reason="invalid",
        errors=invalid.errors,
        language=invalid.language,  # type: ignore[arg-type]  # read only when a known Language
        contact=invalid.contact,
    )
