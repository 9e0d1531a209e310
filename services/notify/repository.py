"""Notify's tables (schema `notify`): notifications (scheduled, sent, dead) and decisions."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal, TypedDict, cast

from services.notify.domain import Planned
from shared.db import Connection
from shared.events import Language


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


async def schedule(
    conn: Connection,
    source_event_id: str,
    source_event_type: str,
    planned: Planned,
    payload: dict[str, Any],
    delay_s: float = 0.0,
) -> bool:
    """Schedule one message; False if this event already scheduled it for this recipient and channel."""
    inserted = await conn.fetchval(
        """INSERT INTO notify.notifications (notification_id, dedupe_key, source_event_id, source_event_type,
               application_id, channel, recipient_ref, template, language, payload, subscription_id, next_attempt_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, now() + make_interval(secs => $12))
           ON CONFLICT (dedupe_key) DO NOTHING RETURNING true""",
        uuid.uuid4(),
        planned.dedupe_key(source_event_id),
        source_event_id,
        source_event_type,
        planned.application_id,
        planned.channel,
        planned.recipient_ref,
        planned.template,
        planned.language,
        payload,
        planned.subscription_id,
        delay_s,
    )
    return bool(inserted)


async def store_decision(conn: Connection, application_id: str, source_event_id: str, decision: dict[str, Any]) -> None:
    await conn.execute(
        """INSERT INTO notify.decisions (application_id, source_event_id, decision) VALUES ($1, $2, $3)
           ON CONFLICT (application_id) DO NOTHING""",
        application_id,
        source_event_id,
        decision,
    )
    # Grant e-mails that were waiting for this decision may go now.
    await conn.execute(
        """UPDATE notify.notifications SET next_attempt_at = now()
           WHERE application_id = $1 AND status = 'scheduled' AND channel = 'email'
             AND template LIKE 'grant.%' AND attempts = 0 AND next_attempt_at > now()""",
        application_id,
    )


async def postpone(conn: Connection, notification_id: uuid.UUID, seconds: float) -> None:
    """Look at this message again in `seconds`, without counting an attempt."""
    await conn.execute(
        "UPDATE notify.notifications SET next_attempt_at = now() + make_interval(secs => $2) WHERE notification_id = $1",
        notification_id,
        seconds,
    )


async def decision(conn: Connection, application_id: str) -> dict[str, Any] | None:
    value = await conn.fetchval("SELECT decision FROM notify.decisions WHERE application_id = $1", application_id)
    return value if isinstance(value, dict) else None


async def claim_next(conn: Connection) -> DueNotification | None:
    """The next due message, locked for this transaction; other workers and replicas skip it."""
    row = await conn.fetchrow(
        """SELECT * FROM notify.notifications
           WHERE status = 'scheduled' AND next_attempt_at <= now()
           ORDER BY next_attempt_at LIMIT 1 FOR UPDATE SKIP LOCKED"""
    )
    return cast(DueNotification, dict(row)) if row is not None else None


async def mark_sent(conn: Connection, notification_id: uuid.UUID, at: datetime) -> None:
    """Delivered: the stored copy of the event (personal data) is no longer needed."""
    await conn.execute(
        """UPDATE notify.notifications
           SET status = 'sent', sent_at = $2, attempts = attempts + 1, payload = NULL, message = NULL
           WHERE notification_id = $1""",
        notification_id,
        at,
    )


async def mark_failed_attempt(conn: Connection, notification_id: uuid.UUID, error: str, retry_in_s: float, dead: bool) -> None:
    await conn.execute(
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


async def dead_letters(conn: Connection, channel: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    """Parked messages, newest first; no personal data (recipient_ref, never the address)."""
    rows = await conn.fetch(
        """SELECT notification_id, channel, recipient_ref, subscription_id, template, application_id,
                  source_event_id, source_event_type, attempts, redeliveries, last_error, scheduled_at, dead_at
           FROM notify.notifications
           WHERE status = 'dead' AND ($1::text IS NULL OR channel = $1)
           ORDER BY dead_at DESC LIMIT $2""",
        channel,
        limit,
    )
    return [dict(r) for r in rows]


async def redeliver(conn: Connection, notification_id: uuid.UUID) -> bool:
    """Put a parked message back in the queue with fresh attempts; False if it is not parked."""
    updated = await conn.fetchval(
        """UPDATE notify.notifications
           SET status = 'scheduled', attempts = 0, next_attempt_at = now(), dead_at = NULL,
               redeliveries = redeliveries + 1
           WHERE notification_id = $1 AND status = 'dead' RETURNING true""",
        notification_id,
    )
    return bool(updated)
