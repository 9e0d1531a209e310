"""Eligibility's tables (schema `eligibility`): applications, decisions and their revisions, findings.

`EligibilityRepository` is what the handlers get as `uow.repo`, bound to the unit of work's
transaction; handlers never see the connection.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.eligibility.schemes.s3_financing.selection import OwnSelection
from shared.db import Connection
from shared.events import Application, CallOpened, ClusterEvaluated, EligibilityDecided, FindingRecorded


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

    async def store_applications(self, applications: Sequence[Application]) -> None:
        """Keep the applications (one statement); one already kept is left as it is."""
        if not applications:
            return
        await self.conn.execute(
            """INSERT INTO eligibility.applications (application_id, scheme, call_id, submitted_at, application)
               SELECT a, s, c, t, j::jsonb
               FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::text[])
                    WITH ORDINALITY AS b(a, s, c, t, j, n)
               ORDER BY n
               ON CONFLICT (application_id) DO NOTHING""",
            [a.application_id for a in applications],
            [a.scheme for a in applications],
            [a.call_id for a in applications],
            [a.submitted_at for a in applications],
            [a.model_dump_json() for a in applications],
        )

    async def application(self, application_id: str) -> Application | None:
        row = await self.conn.fetchval(
            "SELECT application FROM eligibility.applications WHERE application_id = $1", application_id
        )
        return Application.model_validate(row) if row is not None else None

    async def store_decisions(self, decisions: Sequence[tuple[EligibilityDecided, str]]) -> set[tuple[str, str]]:
        """Record first decisions and their revision rows in one statement; returns the (application
        id, event id) of those recorded: an application already decided keeps its decision. The
        applications must be distinct."""
        if not decisions:
            return set()
        rows = await self.conn.fetch(
            """WITH input AS (
                   SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::text[],
                                        $7::int[], $8::text[], $9::text[]) WITH ORDINALITY
                       AS i(application_id, scheme, outcome, parameter_version, decided_at, decision, revision, event_id,
                            decided_by, n)
               ), decided AS (
                   INSERT INTO eligibility.decisions
                       (application_id, scheme, outcome, parameter_version, decided_at, decision, revision, event_id)
                   SELECT application_id, scheme, outcome, parameter_version, decided_at, decision::jsonb, revision, event_id
                   FROM input ORDER BY n
                   ON CONFLICT (application_id) DO NOTHING
                   RETURNING application_id, event_id
               ), revisions AS (
                   INSERT INTO eligibility.decision_revisions
                       (application_id, revision, event_id, decided_by, outcome, decided_at, decision)
                   SELECT i.application_id, i.revision, i.event_id, i.decided_by, i.outcome, i.decided_at, i.decision::jsonb
                   FROM input i JOIN decided d ON d.application_id = i.application_id AND d.event_id = i.event_id
               )
               SELECT application_id, event_id FROM decided""",
            [d.application_id for d, _ in decisions],
            [d.scheme for d, _ in decisions],
            [d.outcome for d, _ in decisions],
            [d.parameter_version for d, _ in decisions],
            [d.decided_at for d, _ in decisions],
            [d.model_dump_json() for d, _ in decisions],
            [d.revision for d, _ in decisions],
            [event_id for _, event_id in decisions],
            [d.decided_by for d, _ in decisions],
        )
        return {(r["application_id"], r["event_id"]) for r in rows}

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

    async def store_call_opened(self, event: CallOpened) -> CallOpened | None:
        """Record the call; None if it is new, else the call as it was opened before (nothing changes)."""
        inserted = await self.conn.fetchval(
            """INSERT INTO eligibility.calls_opened (call_id, scheme, year, opened_at, event) VALUES ($1, $2, $3, $4, $5)
               ON CONFLICT (call_id) DO NOTHING RETURNING true""",
            event.call_id,
            event.scheme,
            event.year,
            event.opened_at,
            event.model_dump(mode="json"),
        )
        if inserted:
            return None
        before = await self.conn.fetchval("SELECT event FROM eligibility.calls_opened WHERE call_id = $1", event.call_id)
        return CallOpened.model_validate(before)

    async def store_evaluation(self, event: ClusterEvaluated) -> ClusterEvaluated | None:
        """Record the evaluation; None if it is new, else the one recorded before for that cluster and year."""
        inserted = await self.conn.fetchval(
            """INSERT INTO eligibility.evaluations (evaluation_id, application_id, year, continues, evaluated_at, event)
               VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (evaluation_id) DO NOTHING RETURNING true""",
            event.evaluation_id,
            event.application_id,
            event.year,
            event.continues,
            event.evaluated_at,
            event.model_dump(mode="json"),
        )
        if inserted:
            return None
        before = await self.conn.fetchval(
            "SELECT event FROM eligibility.evaluations WHERE evaluation_id = $1", event.evaluation_id
        )
        return ClusterEvaluated.model_validate(before)

    async def own_selection(self, scheme: str) -> OwnSelection:
        """The beneficiaries the project's own closed calls of `scheme` selected, and those recorded as
        selected outside the project."""
        # One statement, so one round trip and one snapshot for the three.
        row = await self.conn.fetchrow(
            """SELECT
                 ARRAY(SELECT call_id FROM eligibility.calls WHERE scheme = $1 ORDER BY call_id) AS calls,
                 ARRAY(SELECT DISTINCT d.decision->>'beneficiary_id'
                       FROM eligibility.calls c CROSS JOIN LATERAL jsonb_array_elements(c.result->'ranking') AS r(entry)
                       JOIN eligibility.decisions d ON d.application_id = r.entry->>'application_id'
                       WHERE c.scheme = $1 AND (r.entry->>'selected')::boolean
                         AND d.decision->>'beneficiary_id' IS NOT NULL) AS selected,
                 ARRAY(SELECT beneficiary_id FROM eligibility.outside_selections WHERE scheme = $1) AS outside""",
            scheme,
        )
        assert row is not None  # a SELECT without FROM returns its one row
        return OwnSelection(
            calls_closed=tuple(row["calls"]), selected=frozenset(row["selected"]), outside=frozenset(row["outside"])
        )

    async def record_outside_selection(
        self, scheme: str, beneficiary_id: str, officer: str, reason: str, document_reference: str
    ) -> bool:
        """False if that beneficiary was recorded as selected before (nothing changes)."""
        inserted = await self.conn.fetchval(
            """INSERT INTO eligibility.outside_selections (scheme, beneficiary_id, officer, reason, document_reference)
               VALUES ($1, $2, $3, $4, $5) ON CONFLICT (scheme, beneficiary_id) DO NOTHING RETURNING true""",
            scheme,
            beneficiary_id,
            officer,
            reason,
            document_reference,
        )
        return bool(inserted)
