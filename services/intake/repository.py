"""Intake's tables (schema `intake`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from shared.db import Connection
from shared.events import Application, ApplicationRejected


async def insert_application(
    conn: Connection,
    application: Application,
    channel: str,
    fingerprint: str,
    received_at: datetime,
    portal: str | None = None,
) -> tuple[str, object] | None:
    """Store a new application; if the id is taken, return the stored fingerprint and body instead."""
    inserted = await conn.fetchval(
        """INSERT INTO intake.applications (application_id, scheme, channel, body_sha256, application, received_at, portal)
           VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (application_id) DO NOTHING RETURNING true""",
        application.application_id,
        application.scheme,
        channel,
        fingerprint,
        application.model_dump(mode="json"),
        received_at,
        portal,
    )
    if inserted:
        return None
    row = await conn.fetchrow(
        "SELECT body_sha256, application FROM intake.applications WHERE application_id = $1", application.application_id
    )
    assert row is not None  # the insert conflicted with this very row, and applications are never deleted
    return str(row["body_sha256"]), row["application"]


async def insert_rejection(conn: Connection, rejection: ApplicationRejected) -> None:
    await conn.execute(
        """INSERT INTO intake.rejections
               (rejection_id, application_id, channel, reason, errors, source_reference, rejected_at, conflicts_with)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8)""",
        rejection.rejection_id,
        rejection.application_id,
        rejection.channel,
        rejection.reason,
        [e.model_dump(mode="json") for e in rejection.errors],
        rejection.source_reference,
        rejection.rejected_at,
        rejection.conflicts_with,
    )


async def application_status(conn: Connection, application_id: str) -> dict[str, object] | None:
    row = await conn.fetchrow(
        "SELECT application_id, scheme, channel, received_at, portal FROM intake.applications WHERE application_id = $1",
        application_id,
    )
    return dict(row) if row else None


async def store_status_event(
    conn: Connection,
    *,
    source: str,
    event_id: str,
    application_id: str,
    kind: str,
    revision: int | None,
    at: datetime,
    body: dict[str, Any],
) -> bool:
    """Keep one event of the status projection; False if it was kept before (a redelivery)."""
    inserted = await conn.fetchval(
        """INSERT INTO intake.status_events (source, event_id, application_id, kind, revision, at, body)
           VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (source, event_id) DO NOTHING RETURNING true""",
        source,
        event_id,
        application_id,
        kind,
        revision,
        at,
        body,
    )
    return bool(inserted)


async def status_events(conn: Connection, application_id: str) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        """SELECT event_id, kind, revision, at, body FROM intake.status_events WHERE application_id = $1
           ORDER BY at, event_id""",
        application_id,
    )
    return [dict(r) for r in rows]


async def pending_reviews(conn: Connection, scheme: str | None) -> list[dict[str, Any]]:
    """The latest decision revision of every application whose latest revision waits for review."""
    rows = await conn.fetch(
        """SELECT DISTINCT ON (application_id) application_id, event_id, revision, body
           FROM intake.status_events WHERE kind = 'decided' AND ($1::text IS NULL OR body->>'scheme' = $1)
           ORDER BY application_id, revision DESC""",
        scheme,
    )
    return [dict(r) for r in rows if r["body"]["outcome"] == "needs_review"]
