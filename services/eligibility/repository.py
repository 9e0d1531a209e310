"""Eligibility's tables (schema `eligibility`): applications, decisions and their revisions, findings.

`EligibilityRepository` is what the handlers get as `uow.repo`, bound to the unit of work's
transaction; handlers never see the connection.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.db import Connection
from shared.events import Application, EligibilityDecided, FindingRecorded


@dataclass(frozen=True, slots=True)
class Latest:
    """The latest revision of an application's decision, with the CloudEvents id it was published under."""

    decision: EligibilityDecided
    event_id: str | None


@dataclass(frozen=True, slots=True)
class Pending:
    decision: EligibilityDecided
    submitted_at: datetime


class EligibilityRepository:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    async def store_application(self, application: Application) -> None:
        await self.conn.execute(
            """INSERT INTO eligibility.applications (application_id, scheme, call_id, submitted_at, application)
               VALUES ($1, $2, $3, $4, $5) ON CONFLICT (application_id) DO NOTHING""",
            application.application_id,
            application.scheme,
            application.call_id,
            application.submitted_at,
            application.model_dump(mode="json"),
        )

    async def application(self, application_id: str) -> Application | None:
        row = await self.conn.fetchval(
            "SELECT application FROM eligibility.applications WHERE application_id = $1", application_id
        )
        return Application.model_validate(row) if row is not None else None

    async def store_decision(self, decided: EligibilityDecided, event_id: str) -> bool:
        """Record the first decision (revision 1); False if the application was already decided."""
        inserted = await self.conn.fetchval(
            """INSERT INTO eligibility.decisions
                   (application_id, scheme, outcome, parameter_version, decided_at, decision, revision, event_id)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (application_id) DO NOTHING RETURNING true""",
            decided.application_id,
            decided.scheme,
            decided.outcome,
            decided.parameter_version,
            decided.decided_at,
            decided.model_dump(mode="json"),
            decided.revision,
            event_id,
        )
        if inserted:
            await self._store_revision_row(decided, event_id)
        return bool(inserted)

    async def latest(self, application_id: str, *, for_update: bool = False) -> Latest | None:
        """The latest revision; `for_update` locks it until the transaction ends (one reviser at a time)."""
        row = await self.conn.fetchrow(
            "SELECT decision, event_id FROM eligibility.decisions WHERE application_id = $1"
            + (" FOR UPDATE" if for_update else ""),
            application_id,
        )
        if row is None:
            return None
        return Latest(EligibilityDecided.model_validate(row["decision"]), row["event_id"])

    async def store_revision(self, decided: EligibilityDecided, event_id: str) -> None:
        """Make `decided` (revision > 1) the latest and keep it in the history."""
        await self.conn.execute(
            """UPDATE eligibility.decisions SET outcome = $2, parameter_version = $3, decided_at = $4, decision = $5,
                      revision = $6, event_id = $7
               WHERE application_id = $1""",
            decided.application_id,
            decided.outcome,
            decided.parameter_version,
            decided.decided_at,
            decided.model_dump(mode="json"),
            decided.revision,
            event_id,
        )
        await self._store_revision_row(decided, event_id)

    async def _store_revision_row(self, decided: EligibilityDecided, event_id: str | None) -> None:
        await self.conn.execute(
            """INSERT INTO eligibility.decision_revisions
                   (application_id, revision, event_id, decided_by, outcome, decided_at, decision)
               VALUES ($1, $2, $3, $4, $5, $6, $7)""",
            decided.application_id,
            decided.revision,
            event_id,
            decided.decided_by,
            decided.outcome,
            decided.decided_at,
            decided.model_dump(mode="json"),
        )

    async def finding_known(self, finding_id: str) -> bool:
        return bool(await self.conn.fetchval("SELECT true FROM eligibility.findings WHERE finding_id = $1", finding_id))

    async def store_finding(self, finding: FindingRecorded, revision: int) -> None:
        await self.conn.execute(
            """INSERT INTO eligibility.findings (finding_id, application_id, criterion, outcome, reason,
                   document_reference, officer, recorded_at, revision)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)""",
            finding.finding_id,
            finding.application_id,
            finding.criterion,
            finding.outcome,
            finding.reason,
            finding.document_reference,
            finding.officer,
            finding.recorded_at,
            revision,
        )

    async def pending(self, scheme: str | None = None) -> list[Pending]:
        """Applications whose latest decision waits for a case handler, oldest submission first."""
        rows = await self.conn.fetch(
            """SELECT d.decision, a.submitted_at FROM eligibility.decisions d JOIN eligibility.applications a
                      USING (application_id)
               WHERE d.outcome = 'needs_review' AND ($1::text IS NULL OR d.scheme = $1)
               ORDER BY a.submitted_at, d.application_id""",
            scheme,
        )
        return [Pending(EligibilityDecided.model_validate(r["decision"]), r["submitted_at"]) for r in rows]

    async def history(self, application_id: str) -> dict[str, list[dict[str, Any]]]:
        revisions = await self.conn.fetch(
            """SELECT revision, event_id, decided_by, outcome, decided_at FROM eligibility.decision_revisions
               WHERE application_id = $1 ORDER BY revision""",
            application_id,
        )
        findings = await self.conn.fetch(
            """SELECT finding_id, criterion, outcome, reason, document_reference, officer, recorded_at, revision
               FROM eligibility.findings WHERE application_id = $1 ORDER BY revision, recorded_at""",
            application_id,
        )
        return {"revisions": [dict(r) for r in revisions], "findings": [dict(r) for r in findings]}
