"""Intake's tables (schema `intake`)."""

from __future__ import annotations

from datetime import datetime

from shared.db import Connection
from shared.events import Application, ApplicationRejected


async def insert_application(
    conn: Connection, application: Application, channel: str, fingerprint: str, received_at: datetime
) -> tuple[str, object] | None:
    """Store a new application; if the id is taken, return the stored fingerprint and body instead."""
    inserted = await conn.fetchval(
        """INSERT INTO intake.applications (application_id, scheme, channel, body_sha256, application, received_at)
           VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (application_id) DO NOTHING RETURNING true""",
        application.application_id,
        application.scheme,
        channel,
        fingerprint,
        application.model_dump(mode="json"),
        received_at,
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
        "SELECT application_id, scheme, channel, received_at FROM intake.applications WHERE application_id = $1",
        application_id,
    )
    return dict(row) if row else None
