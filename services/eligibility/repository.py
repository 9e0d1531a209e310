"""Eligibility's tables (schema `eligibility`)."""

from __future__ import annotations

from shared.db import Connection
from shared.events import Application, EligibilityDecided


async def store_application(conn: Connection, application: Application) -> None:
    await conn.execute(
        """INSERT INTO eligibility.applications (application_id, scheme, call_id, submitted_at, application)
           VALUES ($1, $2, $3, $4, $5) ON CONFLICT (application_id) DO NOTHING""",
        application.application_id,
        application.scheme,
        application.call_id,
        application.submitted_at,
        application.model_dump(mode="json"),
    )


async def store_decision(conn: Connection, decided: EligibilityDecided) -> bool:
    """Record the decision; False if the application was already decided."""
    inserted = await conn.fetchval(
        """INSERT INTO eligibility.decisions (application_id, scheme, outcome, parameter_version, decided_at, decision)
           VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (application_id) DO NOTHING RETURNING true""",
        decided.application_id,
        decided.scheme,
        decided.outcome,
        decided.parameter_version,
        decided.decided_at,
        decided.model_dump(mode="json"),
    )
    return bool(inserted)
