"""Notify's tables (schema `notify`): notifications (scheduled, sent, dead), decisions and grant recipients.

`NotifyRepository` is bound to one transaction's connection (the runtime builds one per unit of work:
`uow.repo`); every batch operation is one statement. `FakeNotifyRepository` (tests/unit/notify) keeps
the same rows in memory for pure handler tests.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, TypedDict, cast

import structlog
from pydantic import TypeAdapter, ValidationError
from typing_extensions import TypedDict as ModelDict  # pydantic reads typing's TypedDict only from Python 3.12

from services.notify.domain import Planned
from services.notify.render import StoredDecision
from shared.db import Connection
from shared.events import CriterionResult, Event, GrantCommitted, Language, Recipient

log = structlog.get_logger("notify.repository")


class DueNotification(TypedDict):
    """A row of notify.notifications as the dispatcher claims it (every column, migrations 001-002)."""

    notification_id: uuid.UUID
    dedupe_key: str
    source_event_id: str
    source_event_type: str
    application_id: str | None
    channel: Literal["email", "webhook"]
    recipient_ref: str
    template: str
    language: Language
    message: Any  # jsonb, no longer written (rendering happens at send time)
    status: Literal["scheduled", "sent", "dead"]
    attempts: int
    last_error: str | None
    next_attempt_at: datetime
    scheduled_at: datetime
    sent_at: datetime | None
    payload: dict[str, Any] | None  # {"event": ..., "ce": ...}: the cause event; cleared once delivered
    subscription_id: str | None  # webhooks only
    redeliveries: int
    dead_at: datetime | None


@dataclass(frozen=True)
class Scheduled:
    """One message to schedule: what was planned for which consumed event, and the stored copy."""

    source_event_id: str
    source_event_type: str
    planned: Planned
    payload: str
    """The stored copy as JSON text: serialised once per consumed event, shared by its messages."""
    delay_s: float = 0.0


@dataclass(frozen=True)
class StoredDecisionRow:
    application_id: str
    source_event_id: str
    decision: StoredDecision


@dataclass(frozen=True)
class GrantRecipient:
    """Whom a committed grant's later changes are told to (notify.grant_recipients)."""

    grant_id: str
    application_id: str
    programme: str
    last_budget_year: int
    recipient: Recipient

    @classmethod
    def of(cls, committed: GrantCommitted) -> GrantRecipient:
        years = [s.budget_year for s in committed.grant.schedule]
        return cls(committed.grant_id, committed.application_id, committed.grant.programme, max(years), committed.recipient)


class _DecisionDocument(ModelDict):
    """notify.decisions.decision: what a grant e-mail explains of the eligibility decision."""

    criteria: list[CriterionResult]
    time_zone: str


_DECISION = TypeAdapter(_DecisionDocument)


def decision_json(decision: StoredDecision) -> str:
    """The stored form of a decision, written by pydantic in one pass (criteria and all)."""
    return _DECISION.dump_json({"criteria": decision.criteria, "time_zone": decision.time_zone}).decode()


def read_decision(text: str) -> StoredDecision:
    """A stored decision read back in one pass; ValidationError if it is not one."""
    document = _DECISION.validate_json(text)
    return StoredDecision(document["criteria"], document["time_zone"])


class NotifyRepository:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    async def schedule(self, messages: Sequence[Scheduled]) -> int:
        """Schedule every message in one statement; returns how many were new (a message this event
        already scheduled for this recipient and channel is not scheduled twice)."""
        if not messages:
            return 0
        rows = await self.conn.fetch(
            """INSERT INTO notify.notifications (notification_id, dedupe_key, source_event_id, source_event_type,
                   application_id, channel, recipient_ref, template, language, payload, subscription_id, next_attempt_at)
               SELECT b.id, b.dedupe, b.src, b.typ, b.app, b.channel, b.ref, b.template, b.lang, b.payload::jsonb, b.sub,
                      now() + make_interval(secs => b.delay)
               FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
                           $9::text[], $10::text[], $11::text[], $12::float8[])
                    WITH ORDINALITY AS b(id, dedupe, src, typ, app, channel, ref, template, lang, payload, sub, delay, n)
               ORDER BY b.n
               ON CONFLICT (dedupe_key) DO NOTHING RETURNING 1""",
            [uuid.uuid4() for _ in messages],
            [m.planned.dedupe_key(m.source_event_id) for m in messages],
            [m.source_event_id for m in messages],
            [m.source_event_type for m in messages],
            [m.planned.application_id for m in messages],
            [m.planned.channel for m in messages],
            [m.planned.recipient_ref for m in messages],
            [m.planned.template for m in messages],
            [m.planned.language for m in messages],
            [m.payload for m in messages],
            [m.planned.subscription_id for m in messages],
            [m.delay_s for m in messages],
        )
        return len(rows)

    async def store_decisions(self, decisions: Sequence[StoredDecisionRow]) -> None:
        """Keep each application's first decision (to explain it in the grant e-mail), one statement for
        the batch. A grant e-mail waiting for it needs no update: `claim_due` hands it out once its
        decision is committed (the consumer's commit wakes the dispatcher)."""
        if not decisions:
            return
        await self.conn.execute(
            """INSERT INTO notify.decisions (application_id, source_event_id, decision)
               SELECT a, s, d::jsonb FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS b(a, s, d, n)
               ORDER BY b.n
               ON CONFLICT (application_id) DO NOTHING""",
            [d.application_id for d in decisions],
            [d.source_event_id for d in decisions],
            [decision_json(d.decision) for d in decisions],
        )

    async def decisions(self, application_ids: Sequence[str]) -> dict[str, StoredDecision]:
        """The stored decisions of these applications (those that have a readable one: an unreadable
        one is logged, and its grant e-mail goes without explaining the criteria)."""
        if not application_ids:
            return {}
        rows = await self.conn.fetch(
            "SELECT application_id, decision::text AS decision FROM notify.decisions WHERE application_id = ANY($1::text[])",
            list(set(application_ids)),
        )
        found: dict[str, StoredDecision] = {}
        for row in rows:
            try:
                found[row["application_id"]] = read_decision(row["decision"])
            except ValidationError as error:
                log.warning("stored decision unreadable", application_id=row["application_id"], errors=error.error_count())
        return found

    async def store_recipients(self, recipients: Sequence[GrantRecipient]) -> None:
        """Keep whom each committed grant's later changes are told to, one statement for the batch."""
        if not recipients:
            return
        await self.conn.execute(
            """INSERT INTO notify.grant_recipients (grant_id, application_id, programme, last_budget_year, recipient)
               SELECT g, a, p, y, r::jsonb
               FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::text[]) WITH ORDINALITY AS b(g, a, p, y, r, n)
               ORDER BY b.n
               ON CONFLICT (grant_id) DO NOTHING""",
            [r.grant_id for r in recipients],
            [r.application_id for r in recipients],
            [r.programme for r in recipients],
            [r.last_budget_year for r in recipients],
            [r.recipient.model_dump_json() for r in recipients],
        )

    async def recipients(self, grants: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Recipient]:
        """The stored recipients of these (grant id, application id) pairs, by pair. A grant stored
        for another application is not found: a release naming a grant that is not its application's
        is told to nobody (its e-mail waits, then is parked). An unreadable row is logged and left out."""
        if not grants:
            return {}
        unique = sorted(set(grants))
        rows = await self.conn.fetch(
            """SELECT r.grant_id, r.application_id, r.recipient::text AS recipient FROM notify.grant_recipients r
               JOIN unnest($1::text[], $2::text[]) AS asked(grant_id, application_id)
                 ON asked.grant_id = r.grant_id AND asked.application_id = r.application_id""",
            [g for g, _ in unique],
            [a for _, a in unique],
        )
        found: dict[tuple[str, str], Recipient] = {}
        for row in rows:
            try:
                found[(row["grant_id"], row["application_id"])] = Recipient.model_validate_json(row["recipient"])
            except ValidationError as error:
                log.warning("stored grant recipient unreadable", grant_id=row["grant_id"], errors=error.error_count())
        return found

    async def forget_recipients(self, programme: str, before_year: int) -> int:
        """Delete the recipients of the programme's grants whose last budget year is before `before_year`
        (they can no longer change); returns how many."""
        deleted = await self.conn.fetch(
            "DELETE FROM notify.grant_recipients WHERE programme = $1 AND last_budget_year < $2 RETURNING 1",
            programme,
            before_year,
        )
        return len(deleted)

    async def claim_due(self, limit: int, decision_wait_s: float) -> list[DueNotification]:
        """Up to `limit` due messages, locked for this transaction; other workers and replicas skip them.

        An e-mail that needs something another event brings is due only once that is stored, or once
        it has waited `decision_wait_s` since it was scheduled: a grant e-mail (it explains the
        eligibility decision too) its application's decision; a release e-mail its grant's recipient
        (from the GrantCommitted). Decided in the same statement and snapshot as the claim, so what is
        committed later cannot be missed (its commit wakes the dispatcher, whose next claim sees both)."""
        rows = await self.conn.fetch(
            """SELECT n.* FROM notify.notifications n
               WHERE n.status = 'scheduled' AND n.next_attempt_at <= now()
                 AND NOT (n.channel = 'email' AND n.template LIKE 'grant.%' AND n.application_id IS NOT NULL
                          AND n.scheduled_at > now() - make_interval(secs => $2)
                          AND NOT EXISTS (SELECT 1 FROM notify.decisions d WHERE d.application_id = n.application_id))
                 AND NOT (n.channel = 'email' AND n.template LIKE 'release.%'
                          AND n.scheduled_at > now() - make_interval(secs => $2)
                          AND NOT EXISTS (SELECT 1 FROM notify.grant_recipients r
                                          WHERE r.grant_id = n.payload->'event'->>'grant_id'
                                            AND r.application_id = n.application_id))
               ORDER BY n.next_attempt_at LIMIT $1 FOR UPDATE OF n SKIP LOCKED""",
            limit,
            decision_wait_s,
        )
        return [cast(DueNotification, dict(r)) for r in rows]

    async def mark_sent(self, notification_ids: Sequence[uuid.UUID], at: datetime) -> None:
        """Delivered, all in one statement: the stored copy of the event (personal data) is no longer needed."""
        if not notification_ids:
            return
        await self.conn.execute(
            """UPDATE notify.notifications
               SET status = 'sent', sent_at = $2, attempts = attempts + 1, payload = NULL, message = NULL
               WHERE notification_id = ANY($1::uuid[])""",
            list(notification_ids),
            at,
        )

    async def mark_failed_attempt(self, notification_id: uuid.UUID, error: str, retry_in_s: float, dead: bool) -> None:
        await self.conn.execute(
            """UPDATE notify.notifications
               SET attempts = attempts + 1, last_error = $2,
                   next_attempt_at = now() + make_interval(secs => $3),
                   status = CASE WHEN $4 THEN 'dead' ELSE status END,
                   dead_at = CASE WHEN $4 THEN now() ELSE dead_at END
               WHERE notification_id = $1""",
            notification_id,
            error[:500],
            retry_in_s,
            dead,
        )

    async def dead_letters(self, channel: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Parked messages, newest first; no personal data (recipient_ref, never the address)."""
        rows = await self.conn.fetch(
            """SELECT notification_id, channel, recipient_ref, subscription_id, template, application_id,
                      source_event_id, source_event_type, attempts, redeliveries, last_error, scheduled_at, dead_at
               FROM notify.notifications
               WHERE status = 'dead' AND ($1::text IS NULL OR channel = $1)
               ORDER BY dead_at DESC LIMIT $2""",
            channel,
            limit,
        )
        return [dict(r) for r in rows]

    async def redeliver(self, notification_id: uuid.UUID) -> bool:
        """Put a parked message back in the queue with fresh attempts; False if it is not parked."""
        updated = await self.conn.fetchval(
            """UPDATE notify.notifications
               SET status = 'scheduled', attempts = 0, next_attempt_at = now(), dead_at = NULL,
                   redeliveries = redeliveries + 1
               WHERE notification_id = $1 AND status = 'dead' RETURNING true""",
            notification_id,
        )
        return bool(updated)


def stored_copy(event: Event, ce: dict[str, str | None]) -> str:
    """A message's stored copy, `{"event": ..., "ce": ...}` as JSON text: the event with pydantic's own
    JSON, once per consumed event however many messages it plans."""
    return f'{{"event":{event.model_dump_json()},"ce":{_json(ce)}}}'


def _json(value: dict[str, Any]) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
