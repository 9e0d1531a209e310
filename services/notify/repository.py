"""Notify's tables (schema `notify`)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg

from services.notify.domain import Planned


async def schedule(conn: asyncpg.Connection, source_event_id: str, source_event_type: str, planned: Planned) -> bool:
    """Schedule one message; False if this event already scheduled it for this recipient and channel."""
    inserted = await conn.fetchval(
        """INSERT INTO notify.notifications (notification_id, dedupe_key, source_event_id, source_event_type,
               application_id, channel, recipient_ref, template, language, message)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
           ON CONFLICT (dedupe_key) DO NOTHING RETURNING true""",
        uuid.uuid4(),
        f"{source_event_id}:{planned.channel}:{planned.recipient_ref}",
        source_event_id,
        source_event_type,
        planned.application_id,
        planned.channel,
        planned.recipient_ref,
        planned.template,
        planned.language,
        {"to": planned.to, "subject": planned.subject, "text": planned.text},
    )
    return bool(inserted)


async def claim_due(conn: asyncpg.Connection, limit: int) -> list[dict[str, Any]]:
    """Due messages, locked for this transaction; other replicas skip them."""
    rows = await conn.fetch(
        """SELECT * FROM notify.notifications
           WHERE status = 'scheduled' AND next_attempt_at <= now()
           ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED""",
        limit,
    )
    return [dict(r) for r in rows]


async def mark_sent(conn: asyncpg.Connection, notification_id: uuid.UUID, at: datetime) -> None:
    await conn.execute(
        "UPDATE notify.notifications SET status = 'sent', sent_at = $2, attempts = attempts + 1 WHERE notification_id = $1",
        notification_id, at,
    )


async def mark_failed_attempt(
    conn: asyncpg.Connection, notification_id: uuid.UUID, error: str, retry_in_s: float, give_up: bool
) -> None:
    await conn.execute(
        """UPDATE notify.notifications
           SET attempts = attempts + 1, last_error = $2,
               next_attempt_at = now() + make_interval(secs => $3),
               status = CASE WHEN $4 THEN 'failed' ELSE status END
           WHERE notification_id = $1""",
        notification_id, error[:500], retry_in_s, give_up,
    )
