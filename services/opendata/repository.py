"""The open-data read model's tables (schema `opendata`), bound to one transaction's connection.

Writes are set-based (one statement per kind of event in a batch); `committed()` reads every grant
with money left, with its application, in one statement (one snapshot).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.opendata.export import CommittedGrant, OpenDataError
from shared.db import Connection
from shared.events import Applicant, ProposedGrant


@dataclass(frozen=True)
class ReceivedRow:
    application_id: str
    applicant: str  # JSON text (cast to jsonb in SQL: the same with or without the pool's json codec)
    title: str | None
    summary: str | None
    received_at: datetime


@dataclass(frozen=True)
class CommittedRow:
    grant_id: str
    application_id: str
    scheme: str
    programme: str
    grant: str  # JSON text of the ProposedGrant
    committed_at: datetime
    years: tuple[tuple[int, int], ...]  # (budget year, minor units) as committed


@dataclass(frozen=True)
class ReleaseRow:
    event_id: str
    grant_id: str
    reason: str
    released_at: datetime


#: Grants whose money left is shown, with their application; a release's reason gives the status.
COMMITTED_QUERY = """
SELECT g.grant_id::text AS grant_id, g.application_id, g.scheme, g.grant_json, g.committed_at,
       greatest(g.committed_at, r.last_at) AS updated_at, r.last_reason,
       a.application_id IS NOT NULL AS known, a.applicant, a.title, a.summary, m.years, m.amounts
FROM opendata.grants g
LEFT JOIN opendata.applications a ON a.application_id = g.application_id
LEFT JOIN LATERAL (
    SELECT max(x.released_at) AS last_at,
           (array_agg(x.reason ORDER BY x.released_at DESC, x.event_id DESC))[1] AS last_reason
    FROM opendata.releases x WHERE x.grant_id = g.grant_id
) r ON true
LEFT JOIN LATERAL (
    SELECT array_agg(y.budget_year ORDER BY y.budget_year) AS years,
           array_agg(y.committed_minor - y.released_minor ORDER BY y.budget_year) AS amounts
    FROM opendata.grant_years y
    WHERE y.grant_id = g.grant_id AND y.committed_minor > y.released_minor
) m ON true
WHERE ($1::text[] IS NULL OR g.programme = ANY($1::text[]))
  AND ($2::text[] IS NULL OR g.application_id = ANY($2::text[]))
ORDER BY g.committed_at, g.application_id
"""

#: A release that ends a grant names its status; the others leave it committed.
ENDING_REASONS = {"withdrawn": "withdrawn", "revoked": "revoked"}


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str | bytes) else value


class OpenDataRepository:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    async def add_applications(self, rows: Sequence[ReceivedRow]) -> None:
        if not rows:
            return
        await self.conn.execute(
            """INSERT INTO opendata.applications (application_id, applicant, title, summary, received_at)
               SELECT a, p::jsonb, t, s, r FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[])
                      AS b(a, p, t, s, r)
               ON CONFLICT (application_id) DO NOTHING""",
            [r.application_id for r in rows],
            [r.applicant for r in rows],
            [r.title for r in rows],
            [r.summary for r in rows],
            [r.received_at for r in rows],
        )

    async def add_grants(self, rows: Sequence[CommittedRow]) -> None:
        """Grants and their committed amounts per year; a grant already known (the same GrantCommitted
        again under another event id, in this batch or an earlier one) adds nothing."""
        unique = list({r.grant_id: r for r in reversed(rows)}.values())[::-1]  # the first of each grant
        if not unique:
            return
        inserted = await self.conn.fetch(
            """INSERT INTO opendata.grants (grant_id, application_id, scheme, programme, grant_json, committed_at)
               SELECT g, a, s, p, j::jsonb, c
               FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[]) AS b(g, a, s, p, j, c)
               ON CONFLICT (grant_id) DO NOTHING RETURNING grant_id::text""",
            [r.grant_id for r in unique],
            [r.application_id for r in unique],
            [r.scheme for r in unique],
            [r.programme for r in unique],
            [r.grant for r in unique],
            [r.committed_at for r in unique],
        )
        new = {r["grant_id"] for r in inserted}
        await self._add_years([(r.grant_id, y, a) for r in unique if r.grant_id in new for y, a in r.years], "committed_minor")

    async def add_releases(self, rows: Sequence[ReleaseRow], years: Sequence[tuple[str, str, int, int]]) -> None:
        """Releases and what each returned per year (event_id, grant_id, budget_year, minor units); an
        event id already projected adds nothing (the inbox drops copies before this; this holds without it)."""
        if not rows:
            return
        inserted = await self.conn.fetch(
            """INSERT INTO opendata.releases (event_id, grant_id, reason, released_at)
               SELECT * FROM unnest($1::text[], $2::uuid[], $3::text[], $4::timestamptz[])
               ON CONFLICT (event_id) DO NOTHING RETURNING event_id""",
            [r.event_id for r in rows],
            [r.grant_id for r in rows],
            [r.reason for r in rows],
            [r.released_at for r in rows],
        )
        new = {r["event_id"] for r in inserted}
        await self._add_years([(g, y, a) for e, g, y, a in years if e in new], "released_minor")

    async def _add_years(self, years: list[tuple[str, int, int]], column: str) -> None:
        summed: dict[tuple[str, int], int] = {}
        for grant_id, year, amount in years:
            summed[(grant_id, year)] = summed.get((grant_id, year), 0) + amount
        if not summed:
            return
        keys = sorted(summed)
        await self.conn.execute(
            f"""INSERT INTO opendata.grant_years (grant_id, budget_year, {column})
                SELECT * FROM unnest($1::uuid[], $2::int[], $3::bigint[])
                ON CONFLICT (grant_id, budget_year) DO UPDATE SET {column} = grant_years.{column} + excluded.{column}""",
            [k[0] for k in keys],
            [k[1] for k in keys],
            [summed[k] for k in keys],
        )

    async def committed(
        self, *, programmes: Collection[str] | None = None, application_ids: Collection[str] | None = None
    ) -> list[CommittedGrant]:
        """Every grant with money left, with what is published of its application. Refuses when a grant's
        ApplicationReceived has not been projected (the export would have no recipient)."""
        rows = await self.conn.fetch(
            COMMITTED_QUERY,
            sorted(programmes) if programmes is not None else None,
            sorted(application_ids) if application_ids is not None else None,
        )
        orphans = sorted(r["application_id"] for r in rows if not r["known"] and r["years"])
        if orphans:
            shown = ", ".join(orphans[:10]) + (f" and {len(orphans) - 10} more" if len(orphans) > 10 else "")
            raise OpenDataError(
                f"no ApplicationReceived projected for committed grant(s) of {shown} "
                "(the open-data service may still be catching up: see its consumer lag)"
            )
        grants: list[CommittedGrant] = []
        for row in rows:
            if not row["years"]:
                continue  # nothing left: released in full
            proposed = ProposedGrant.model_validate(_json(row["grant_json"]))
            grants.append(
                CommittedGrant(
                    grant_id=row["grant_id"],
                    application_id=row["application_id"],
                    scheme=row["scheme"],
                    programme=proposed.programme,
                    instrument=proposed.instrument,
                    currency=proposed.currency,
                    status=ENDING_REASONS.get(row["last_reason"] or "", "committed"),
                    fund_shares=tuple(proposed.fund_shares),
                    amounts=tuple(zip(row["years"], row["amounts"], strict=True)),
                    committed_at=row["committed_at"],
                    updated_at=row["updated_at"],
                    applicant=Applicant.model_validate(_json(row["applicant"])),
                    title=row["title"],
                    summary=row["summary"],
                )
            )
        return grants
