"""Where an application stands: intake's read model, a projection of the public topics.

Intake consumes the decided, committed, refused, released and notification topics and keeps each
event about an application as it was published (`intake.status_events`, one row per event
identity: a redelivery changes nothing). The answer of `GET /v1/applications/{id}` is assembled
from those rows; revisions are ordered by their number, whatever order they arrived in, so a
revision delivered late never hides a newer one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from services.intake import repository
from services.intake.openapi import (
    ApplicationStatus,
    CriterionStatus,
    DecisionRevision,
    GrantStatus,
    NotificationStatus,
    PendingReview,
    ReleaseStatus,
)
from shared.db import Connection
from shared.events import EligibilityDecided, Event, GrantCommitted, GrantRefused, GrantReleased, NotificationSent
from shared.records import Delivery

PROJECTED: tuple[type[Event], ...] = (EligibilityDecided, GrantCommitted, GrantRefused, GrantReleased, NotificationSent)


async def project(conn: Connection, deliveries: Sequence[Delivery[Any]]) -> int:
    """Keep the events of a consumed batch (one statement); returns how many were new (a redelivery,
    or a notification about no application, adds nothing)."""
    return await repository.store_status_events(conn, [e for d in deliveries if (e := _status_event(d)) is not None])


def _status_event(delivery: Delivery[Any]) -> repository.StatusEvent | None:
    event = delivery.event
    if isinstance(event, EligibilityDecided):
        kind, revision, at = "decided", event.revision, event.decided_at
    elif isinstance(event, GrantCommitted):
        kind, revision, at = "committed", None, event.committed_at
    elif isinstance(event, GrantRefused):
        kind, revision, at = "refused", None, event.refused_at
    elif isinstance(event, GrantReleased):
        kind, revision, at = "released", None, event.released_at
    elif isinstance(event, NotificationSent):
        if event.application_id is None:
            return None
        kind, revision, at = "notified", None, event.sent_at
    else:
        raise TypeError(f"intake does not project {type(event).__name__}")
    body = event.model_dump(mode="json", exclude={"recipient"})  # the read model keeps no personal data
    return repository.StatusEvent(delivery.attributes.source, delivery.event_id, event.application_id, kind, revision, at, body)


def _criteria(body: dict[str, Any], only_open: bool = False) -> list[CriterionStatus]:
    return [
        CriterionStatus(
            criterion=c["criterion"], outcome=c["outcome"], message_key=c["message_key"], decided_by=c.get("decided_by", "rules")
        )
        for c in body["criteria"]
        if not only_open or c["outcome"] == "not_decidable"
    ]


def assemble(received: dict[str, Any], events: list[dict[str, Any]]) -> ApplicationStatus:
    """The status answer from the application's row and its projected events."""
    decided = sorted((e for e in events if e["kind"] == "decided"), key=lambda e: e["revision"])
    decisions = [
        DecisionRevision(
            revision=e["revision"],
            event_id=e["event_id"],
            supersedes=e["body"].get("supersedes"),
            decided_by=e["body"].get("decided_by", "rules"),
            decided_at=e["body"]["decided_at"],
            outcome=e["body"]["outcome"],
            parameter_version=e["body"]["parameter_version"],
            criteria=_criteria(e["body"]),
            proposed_grant=e["body"].get("proposed_grant"),
        )
        for e in decided
    ]
    grant = None
    answers = [e for e in events if e["kind"] in ("committed", "refused")]
    if answers:
        last = answers[-1]
        body = last["body"]
        if last["kind"] == "committed":
            grant = GrantStatus(outcome="committed", at=last["at"], grant_id=body["grant_id"], schedule=body["grant"]["schedule"])
        else:
            grant = GrantStatus(outcome="refused", at=last["at"], limit=body["limit"], message_key=body["message_key"])
    releases = [
        ReleaseStatus(
            released_at=e["at"], reason=e["body"]["reason"], released=e["body"]["released"], remaining=e["body"]["remaining"]
        )
        for e in events
        if e["kind"] == "released"
    ]
    notifications = [
        NotificationStatus(
            channel=e["body"]["channel"],
            template=e["body"]["template"],
            language=e["body"]["language"],
            sent_at=e["at"],
            about=e["body"]["source_event_type"],
        )
        for e in events
        if e["kind"] == "notified"
    ]
    status = "received"
    if decisions:
        status = "decided"
    if grant is not None and decisions and decisions[-1].outcome == "eligible":
        status = grant.outcome
    if releases and status == "committed":
        status = "released"
    return ApplicationStatus(
        application_id=received["application_id"],
        status=status,  # type: ignore[arg-type]  # one of the literals set above
        scheme=received["scheme"],
        channel=received["channel"],
        received_at=received["received_at"],
        decisions=decisions,
        grant=grant,
        releases=releases,
        notifications=notifications,
    )


def pending(rows: list[dict[str, Any]]) -> list[PendingReview]:
    return [
        PendingReview(
            application_id=r["application_id"],
            scheme=r["body"]["scheme"],
            revision=r["revision"],
            decided_at=r["body"]["decided_at"],
            criteria=_criteria(r["body"], only_open=True),
        )
        for r in rows
    ]
