"""Intake's tables (schema `intake`)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.db import Connection
from shared.events import Application, ApplicationRejected


@dataclass(frozen=True, slots=True)
class NewApplication:
    application: Application
    channel: str
    fingerprint: str
    received_at: datetime
    portal: str | None = None


async def insert_applications(conn: Connection, applications: Sequence[NewApplication]) -> set[str]:
    """Store new applications (one statement; their ids distinct); returns the ids stored: an id
    already taken keeps what it holds (`stored_bodies` reads it)."""
    if not applications:
        return set()
    rows = await conn.fetch(
        """INSERT INTO intake.applications (application_id, scheme, channel, body_sha256, application, received_at, portal)
           SELECT a, s, c, f, j::jsonb, r, p
           FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[], $7::text[])
                WITH ORDINALITY AS b(a, s, c, f, j, r, p, n)
           ORDER BY n
           ON CONFLICT (application_id) DO NOTHING RETURNING application_id""",
        [a.application.application_id for a in applications],
        [a.application.scheme for a in applications],
        [a.channel for a in applications],
        [a.fingerprint for a in applications],
        [a.application.model_dump_json() for a in applications],
        [a.received_at for a in applications],
        [a.portal for a in applications],
    )
    return {r["application_id"] for r in rows}


async def stored_bodies(conn: Connection, application_ids: Sequence[str]) -> dict[str, tuple[str, object]]:
    """The stored fingerprint and body of applications (a statement of its own, so that it sees an
    application another transaction stored while the insert waited for it)."""
    if not application_ids:
        return {}
    rows = await conn.fetch(
        "SELECT application_id, body_sha256, application FROM intake.applications WHERE application_id = ANY($1::text[])",
        list(application_ids),
    )
    return {r["application_id"]: (str(r["body_sha256"]), r["application"]) for r in rows}


async def insert_rejections(conn: Connection, rejections: Sequence[ApplicationRejected]) -> None:
    if not rejections:
        return
    await conn.execute(
        """INSERT INTO intake.rejections
               (rejection_id, application_id, channel, reason, errors, source_reference, rejected_at, conflicts_with)
           SELECT i, a, c, r, e::jsonb, s, t, w
           FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::timestamptz[], $8::text[])
                AS b(i, a, c, r, e, s, t, w)""",
        [r.rejection_id for r in rejections],
        [r.application_id for r in rejections],
        [r.channel for r in rejections],
        [r.reason for r in rejections],
        [json.dumps([e.model_dump(mode="json") for e in r.errors]) for r in rejections],
        [r.source_reference for r in rejections],
        [r.rejected_at for r in rejections],
        [r.conflicts_with for r in rejections],
    )


async def application_status(conn: Connection, application_id: str) -> dict[str, object] | None:
    row = await conn.fetchrow(
        "SELECT application_id, scheme, channel, received_at, portal FROM intake.applications WHERE application_id = $1",
        application_id,
    )
    return dict(row) if row else None


@dataclass(frozen=True, slots=True)
class StatusEvent:
    """One event of the status projection, as kept."""

    source: str
    event_id: str
    application_id: str
    kind: str
    revision: int | None
    at: datetime
    body: dict[str, Any]


async def store_status_events(conn: Connection, events: Sequence[StatusEvent]) -> int:
    """Keep events of the status projection (one statement); returns how many were new: one kept
    before under its identity (a redelivery) is left as it is."""
    if not events:
        return 0
    rows = await conn.fetch(
        """INSERT INTO intake.status_events (source, event_id, application_id, kind, revision, at, body)
           SELECT s, e, a, k, r, t, b::jsonb
           FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int[], $6::timestamptz[], $7::text[])
                AS i(s, e, a, k, r, t, b)
           ON CONFLICT (source, event_id) DO NOTHING RETURNING true""",
        [e.source for e in events],
        [e.event_id for e in events],
        [e.application_id for e in events],
        [e.kind for e in events],
        [e.revision for e in events],
        [e.at for e in events],
        [json.dumps(e.body) for e in events],
    )
    return len(rows)


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
