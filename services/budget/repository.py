"""The budget ledger's write side (schema `budget`), in asyncpg: `LedgerRepository`, bound to one
transaction, is what the handlers get as `uow.repo`; they never see asyncpg. Concurrency is settled
by PostgreSQL row locks, always taken in the order the migrations state: application advisory
locks, programmes, grants, beneficiary ceiling rows, pots, each set in key order. What operators
read (balances, reconciliation) is in `views.py`."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg

from services.budget.beneficiaries import Draw, LimitBalance, LimitKey, draw_kind, sort_key
from services.budget.domain import BudgetConfig, Placement, PotBalance, Refusal, Slice
from shared.db import Connection
from shared.delivery import HeaderTemplate
from shared.topics import Topic

APPLICATION_LOCK_NAMESPACE = 727_004


class LedgerConfigError(RuntimeError):
    """The database holds a pot or programme the configuration contradicts."""


# --- configuration into the database -------------------------------------------------------------


async def load_config(conn: Connection, config: BudgetConfig) -> int:
    """Upsert programmes and the pots that have a total, in pot_id order, in one transaction.

    A total below what is already committed fails on the pots CHECK constraint: loudly, at start-up."""
    async with conn.transaction():
        for spec in sorted(config.programmes.values(), key=lambda p: p.programme):
            row = await conn.fetchrow(
                """INSERT INTO budget.programmes (programme, currency, yearly_maximum_required, source)
                   VALUES ($1, $2, $3, $4)
                   ON CONFLICT (programme) DO UPDATE SET yearly_maximum_required = EXCLUDED.yearly_maximum_required,
                                                         source = EXCLUDED.source
                   RETURNING currency""",
                spec.programme,
                spec.currency,
                spec.yearly_maximum_required,
                spec.source,
            )
            assert row is not None  # INSERT ... ON CONFLICT DO UPDATE ... RETURNING returns the row
            if row["currency"] != spec.currency:
                raise LedgerConfigError(
                    f"programme {spec.programme}: ledger is in {row['currency']}, config says {spec.currency}"
                )
        loaded = 0
        for pot in sorted(config.pots, key=lambda p: p.pot_id):
            if pot.total is None:
                continue
            row = await conn.fetchrow(
                """INSERT INTO budget.pots
                          (pot_id, programme, unit, fund, instruments, budget_year, total_minor, source)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                   ON CONFLICT (pot_id) DO UPDATE SET total_minor = EXCLUDED.total_minor, source = EXCLUDED.source
                   RETURNING programme, unit, fund, instruments, budget_year""",
                pot.pot_id,
                pot.programme,
                pot.unit,
                pot.fund,
                list(pot.instruments) if pot.is_count else None,
                pot.budget_year,
                pot.total,
                pot.source,
            )
            assert row is not None  # INSERT ... ON CONFLICT DO UPDATE ... RETURNING returns the row
            instruments = tuple(sorted(row["instruments"] or ()))
            stored = (row["programme"], row["unit"], row["fund"], instruments, row["budget_year"])
            wanted = (pot.programme, pot.unit, pot.fund, pot.instruments, pot.budget_year)
            if stored != wanted:
                raise LedgerConfigError(f"pot {pot.pot_id}: the ledger holds {stored}, the configuration says {wanted}")
            loaded += 1
        return loaded


# --- the write side, bound to one transaction ------------------------------------------------------------


@dataclass(frozen=True)
class ProgrammeState:
    programme: str
    currency: str
    open_year: int | None
    yearly_maximum: int | None
    """The maximum the CeilingReset of the open year set, if any."""
    yearly_maximum_required: bool


@dataclass(frozen=True)
class GrantRow:
    grant_id: str
    application_id: str
    scheme: str
    programme: str
    instrument: str
    currency: str
    status: str
    fund_shares: list[tuple[str, int, int]]
    beneficiary_id: str | None = None
    revision: int = 1


@dataclass(frozen=True)
class Applied:
    """What the ledger holds of an application: the decision revision it applied, and its grant."""

    revision: int
    grant: GrantRow | None


@dataclass(frozen=True)
class NewGrant:
    grant_id: str
    application_id: str
    scheme: str
    programme: str
    instrument: str
    currency: str
    conditional: bool
    fund_shares: list[tuple[str, int, int]]
    grant_json: dict[str, Any]
    beneficiary_id: str | None = None
    revision: int = 1
    at: datetime | None = None


@dataclass(frozen=True)
class RefusalRow:
    """A refusal as budget.refusals keeps it: which revision of which application, why, and when."""

    application_id: str
    revision: int
    refusal: Refusal
    at: datetime


@dataclass
class Writes:
    """Everything one batch (or one command) changes, written set-based: one statement per table.

    Balances (`pots`, `limits`) are the new absolute values of rows this transaction holds locked."""

    grants: list[NewGrant] = field(default_factory=list)
    slices: list[tuple[str, str, int, str, str, str | None, int, str]] = field(default_factory=list)
    """(grant_id, pot_id, budget_year, programme, unit, fund, amount, state)"""
    entries: list[tuple[str, str, str, int, int, str, str, str, datetime]] = field(default_factory=list)
    """(pot_id, grant_id, kind, budget_year, amount, unit, reason, cause, at)"""
    released_slices: list[tuple[str, str, int, int]] = field(default_factory=list)
    """(grant_id, pot_id, budget_year, amount returned)"""
    grant_status: list[tuple[str, str, datetime]] = field(default_factory=list)
    """(grant_id, status, at)"""
    pots: dict[str, PotBalance] = field(default_factory=dict)
    limits: dict[LimitKey, tuple[LimitBalance, int | None]] = field(default_factory=dict)
    """key -> (balance, the maximum it was held to)"""
    draws: list[tuple[str, Draw]] = field(default_factory=list)
    """(grant_id, draw): the grant's holding of the row now (inserted, or its amount replaced)"""
    refusals: list[RefusalRow] = field(default_factory=list)
    decisions: dict[str, tuple[int, str, str, datetime]] = field(default_factory=dict)
    """application_id -> (revision, event_id, outcome, at): the newest revision applied"""

    def entry(self, p: Placement, grant_id: str, kind: str, reason: str, cause: str, at: datetime) -> None:
        if p.amount > 0:
            self.entries.append((p.pot_id, grant_id, kind, p.budget_year, p.amount, p.unit, reason, cause, at))


@dataclass(frozen=True)
class ResetResult:
    slices_opened: int
    slices_capped: int
    amount_capped_minor: int
    slices_closed: int


#: The GrantReleased (reason capped) of every grant a year's opening capped, built and written to the
#: outbox by PostgreSQL in one statement (`LedgerRepository.write_capped_releases`): what returned per
#: fund (the 'yearly_maximum' release entries of the programme's pots in that year: a year opens
#: once), the grant's schedule after it. Its JSON is GrantReleased's, written as text (strings through
#: to_json) because json_build_object per row cost as much again; the tests hold it to the model
#: (tests/integration/budget/test_capped_releases.py). The event id is uuid3(RESET_NAMESPACE,
#: "<reset id>/<grant id>"): the same for the same opening. $1 programme, $2 budget year, $3 the
#: namespace's 16 bytes, $4 the reset id, $5 the topic, $6 and $7 the headers' JSON text in four
#: pieces and what goes between them ('id', 'subject' or '': `_header_pieces`; built as text and cast
#: to jsonb, which measured no cheaper than jsonb_set per value: either is ~0.7 s of 49,000 rows),
#: $8 released_at as the event's JSON writes it.
CAPPED_RELEASES = """
WITH capped AS (
    SELECT e.grant_id, p.fund, p.unit, sum(e.amount_minor)::bigint AS amount
    FROM budget.entries e JOIN budget.pots p ON p.pot_id = e.pot_id
    WHERE p.programme = $1 AND e.budget_year = $2 AND e.kind = 'release' AND e.reason = 'yearly_maximum'
      AND p.unit <> 'count'
    GROUP BY e.grant_id, p.fund, p.unit
), released AS (
    SELECT grant_id,
           '[' || string_agg('{"budget_year":' || $2::int || ',"fund":' || to_json(fund)::text
                             || ',"amount":{"amount_minor":' || amount || ',"currency":' || to_json(unit)::text || '}}',
                             ',' ORDER BY fund) || ']' AS released
    FROM capped GROUP BY grant_id
), events AS MATERIALIZED (  -- not inlined into ided: there each of h's four uses ran md5 again
    SELECT g.grant_id::text AS grant_id, g.application_id, g.scheme, c.released, r.remaining,
           md5($3::bytea || convert_to($4::text || '/' || g.grant_id::text, 'UTF8')) AS h
    FROM released c
    JOIN budget.grants g ON g.grant_id = c.grant_id
    CROSS JOIN LATERAL (  -- by the slices' index on grant_id: a join over all slices planned badly
        SELECT '[' || coalesce(string_agg('{"budget_year":' || y.budget_year || ',"amount":{"amount_minor":' || y.amount
                                          || ',"currency":' || to_json(g.currency)::text
                                          || '},"requested":null,"limited_by":null}', ',' ORDER BY y.budget_year),
                               '') || ']' AS remaining
        FROM (SELECT s.budget_year, sum(s.amount_minor)::bigint AS amount FROM budget.slices s
              WHERE s.grant_id = g.grant_id AND s.unit = g.currency
              GROUP BY s.budget_year HAVING sum(s.amount_minor) > 0) y
    ) r
), ided AS (
    -- RFC 9562 version 3: the md5 of namespace and name, its version and variant bits set
    SELECT *, (substr(h, 1, 12) || '3' || substr(h, 14, 3)
               || to_hex((('x' || substr(h, 17, 1))::bit(4)::int & 3) | 8) || substr(h, 18))::uuid AS event_id
    FROM events
), filled AS (
    SELECT *, to_json(event_id::text)::text AS id_json, to_json(application_id)::text AS subject_json FROM ided
)
INSERT INTO budget.outbox (event_id, topic, key, headers, payload)
SELECT event_id, $5, application_id,
       (($6::text[])[1] || CASE ($7::text[])[1] WHEN 'id' THEN id_json ELSE subject_json END
        || ($6::text[])[2] || CASE ($7::text[])[2] WHEN 'id' THEN id_json ELSE subject_json END
        || ($6::text[])[3] || CASE ($7::text[])[3] WHEN 'id' THEN id_json WHEN 'subject' THEN subject_json ELSE '' END
        || ($6::text[])[4])::jsonb,
       convert_to('{"application_id":' || to_json(application_id)::text || ',"grant_id":' || to_json(grant_id)::text
                  || ',"released_at":' || to_json($8::text)::text || ',"scheme":' || to_json(scheme)::text
                  || ',"programme":' || to_json($1::text)::text || ',"reason":"capped","released":' || released
                  || ',"remaining":' || remaining || '}', 'UTF8')
FROM filled
ORDER BY application_id
"""


def _header_pieces(headers: HeaderTemplate) -> tuple[list[str], list[str]]:
    """`headers` as the JSON text of a list of [name, value], cut where the statement puts each event's
    id or subject: four pieces, and what goes between them ('id', 'subject', or '' after the last)."""
    slots = ["subject" if name == "ce_subject" else "id" for name, value in headers if value is None]
    if not 2 <= len(slots) <= 3 or slots.count("subject") != 1:
        raise ValueError(f"a header template fills in one or two ids and one subject, not {slots}")
    mark = "\u0000fill\u0000"
    text = json.dumps([[name, mark if value is None else value] for name, value in headers])
    pieces = text.split(json.dumps(mark))
    if len(pieces) != len(slots) + 1:  # a header's own value was the mark
        raise ValueError("a header template's value cannot be cut where the statement fills it in")
    return pieces + [""] * (4 - len(pieces)), slots + [""] * (3 - len(slots))


class LedgerRepository:
    """The budget's tables in one transaction (the unit of work's connection). Every lock method
    takes its rows in the order of the migrations' lock order, all rows of a batch at once."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.statements = 0

    async def _fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        self.statements += 1
        return list(await self.conn.fetch(sql, *args))

    async def _execute(self, sql: str, *args: Any) -> str:
        self.statements += 1
        return str(await self.conn.execute(sql, *args))

    # -- locks and reads -------------------------------------------------------------------------

    async def lock_applications(self, application_ids: Iterable[str]) -> None:
        """Lock 1: one decision or release of an application at a time, several in hashtext order."""
        ids = sorted(set(application_ids))
        if ids:
            await self._fetch(
                """SELECT pg_advisory_xact_lock($1, h) FROM (
                       SELECT DISTINCT hashtext(a) AS h FROM unnest($2::text[]) AS a ORDER BY 1) AS locks""",
                APPLICATION_LOCK_NAMESPACE,
                ids,
            )

    async def applied(self, application_ids: Iterable[str]) -> dict[str, Applied]:
        """The newest decision revision applied and the grant, per application (under lock 1)."""
        ids = sorted(set(application_ids))
        if not ids:
            return {}
        rows = await self._fetch(
            """SELECT a.id AS application_id, d.revision, g.grant_id::text, g.scheme, g.programme, g.instrument,
                      g.currency, g.status, g.fund_shares, g.beneficiary_id, g.revision AS grant_revision
               FROM unnest($1::text[]) AS a(id)
               LEFT JOIN budget.decisions d ON d.application_id = a.id
               LEFT JOIN budget.grants g ON g.application_id = a.id
               WHERE d.application_id IS NOT NULL OR g.application_id IS NOT NULL""",
            ids,
        )
        return {
            r["application_id"]: Applied(r["revision"] or 1, _grant_row(r) if r["grant_id"] is not None else None) for r in rows
        }

    async def lock_programmes(self, programmes: Iterable[str], *, exclusive: bool = False) -> dict[str, ProgrammeState]:
        """Lock 2: FOR SHARE by commits and releases (they run side by side), FOR UPDATE by a reset."""
        names = sorted(set(programmes))
        if not names:
            return {}
        mode = "FOR UPDATE OF p" if exclusive else "FOR SHARE OF p"
        rows = await self._fetch(
            f"""SELECT p.programme, p.currency, p.open_year, p.yearly_maximum_required, y.yearly_maximum_minor
                FROM budget.programmes p
                LEFT JOIN budget.budget_years y ON y.programme = p.programme AND y.budget_year = p.open_year
                WHERE p.programme = ANY($1::text[]) ORDER BY p.programme {mode}""",
            names,
        )
        return {
            r["programme"]: ProgrammeState(
                r["programme"], r["currency"], r["open_year"], r["yearly_maximum_minor"], r["yearly_maximum_required"]
            )
            for r in rows
        }

    async def lock_programme(self, programme: str, *, exclusive: bool) -> ProgrammeState | None:
        return (await self.lock_programmes([programme], exclusive=exclusive)).get(programme)

    async def lock_grants(self, application_ids: Iterable[str]) -> dict[str, GrantRow]:
        """Lock 3: the grants a release or revocation changes."""
        ids = sorted(set(application_ids))
        if not ids:
            return {}
        rows = await self._fetch(
            """SELECT g.grant_id::text, g.application_id, g.scheme, g.programme, g.instrument, g.currency, g.status,
                      g.fund_shares, g.beneficiary_id, g.revision AS grant_revision
               FROM budget.grants g WHERE g.application_id = ANY($1::text[]) ORDER BY g.application_id FOR UPDATE""",
            ids,
        )
        return {r["application_id"]: _grant_row(r) for r in rows}

    async def slices_of(self, grant_ids: Iterable[str]) -> dict[str, list[Slice]]:
        ids = sorted(set(grant_ids))
        out: dict[str, list[Slice]] = {g: [] for g in ids}
        if not ids:
            return out
        rows = await self._fetch(
            """SELECT grant_id::text, pot_id, budget_year, unit, fund, amount_minor, state FROM budget.slices
               WHERE grant_id = ANY($1::uuid[]) ORDER BY grant_id, budget_year, pot_id""",
            ids,
        )
        for r in rows:
            out[r["grant_id"]].append(Slice(r["pot_id"], r["budget_year"], r["unit"], r["fund"], r["amount_minor"], r["state"]))
        return out

    async def draws_of(self, grant_ids: Iterable[str]) -> dict[str, list[Draw]]:
        ids = sorted(set(grant_ids))
        out: dict[str, list[Draw]] = {g: [] for g in ids}
        if not ids:
            return out
        rows = await self._fetch(
            """SELECT d.grant_id::text, d.limit_id, d.beneficiary_id, d.budget_year, d.mark_year, d.amount, l.unit
               FROM budget.beneficiary_draws d JOIN budget.beneficiary_limits l USING (limit_id, beneficiary_id, budget_year)
               WHERE d.grant_id = ANY($1::uuid[]) ORDER BY 1, 2, 4, 5""",
            ids,
        )
        for r in rows:
            key = LimitKey(r["limit_id"], r["beneficiary_id"], r["budget_year"])
            out[r["grant_id"]].append(Draw(key, r["unit"], r["amount"], r["mark_year"]))
        return out

    async def lock_limits(self, keys: Mapping[LimitKey, str]) -> dict[LimitKey, LimitBalance]:
        """Lock 4: the beneficiary rows (key -> unit), created on first use, in key order. For a
        row counting years, the years its grants hold money in come with it."""
        ordered = sorted(keys, key=sort_key)
        if not ordered:
            return {}
        args = (
            [k.limit_id for k in ordered],
            [k.beneficiary_id for k in ordered],
            [k.budget_year for k in ordered],
            [keys[k] for k in ordered],
        )
        await self._execute(
            """INSERT INTO budget.beneficiary_limits (limit_id, beneficiary_id, budget_year, unit)
               SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::text[]) ORDER BY 1, 2, 3
               ON CONFLICT DO NOTHING""",
            *args,
        )
        rows = await self._fetch(
            """WITH locked AS (
                   SELECT l.limit_id, l.beneficiary_id, l.budget_year, l.unit, l.used
                   FROM budget.beneficiary_limits l
                   JOIN unnest($1::text[], $2::text[], $3::int[]) AS k(limit_id, beneficiary_id, budget_year)
                        USING (limit_id, beneficiary_id, budget_year)
                   ORDER BY l.limit_id, l.beneficiary_id, l.budget_year FOR UPDATE OF l
               )
               SELECT locked.*, (SELECT coalesce(jsonb_object_agg(y.mark_year, y.n), '{}'::jsonb)::text FROM (
                         SELECT d.mark_year, count(*) AS n FROM budget.beneficiary_draws d
                         WHERE locked.unit = 'years' AND d.limit_id = locked.limit_id
                           AND d.beneficiary_id = locked.beneficiary_id AND d.budget_year = locked.budget_year
                           AND d.amount > 0 GROUP BY d.mark_year) y) AS years
               FROM locked""",
            *args[:3],
        )
        out: dict[LimitKey, LimitBalance] = {}
        for r in rows:
            key = LimitKey(r["limit_id"], r["beneficiary_id"], r["budget_year"])
            years = {int(y): int(n) for y, n in json.loads(r["years"]).items()}
            out[key] = LimitBalance(key, r["unit"], r["used"], years)
        return out

    async def lock_pots(self, pot_ids: Iterable[str]) -> dict[str, PotBalance]:
        """Lock 5: the pots the batch touches, always in pot_id order."""
        ids = sorted(set(pot_ids))
        if not ids:
            return {}
        rows = await self._fetch(
            """SELECT pot_id, unit, total_minor, committed_minor, released_minor FROM budget.pots
               WHERE pot_id = ANY($1::text[]) ORDER BY pot_id FOR UPDATE""",
            ids,
        )
        return {
            r["pot_id"]: PotBalance(r["pot_id"], r["unit"], r["total_minor"], r["committed_minor"], r["released_minor"])
            for r in rows
        }

    # -- writes: one statement per table, whatever the batch's size ----------------------------------

    async def write(self, w: Writes) -> None:
        if w.grants:
            g = w.grants
            await self._execute(
                """INSERT INTO budget.grants (grant_id, application_id, scheme, programme, instrument, currency, conditional,
                                              fund_shares, status, grant_json, committed_at, updated_at, beneficiary_id,
                                              revision)
                   SELECT g, a, s, p, i, c, k, f::jsonb, 'committed', j::jsonb, t, t, b, r
                   FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bool[],
                               $8::text[], $9::text[], $10::text[], $11::int[], $12::timestamptz[])
                        AS x(g, a, s, p, i, c, k, f, j, b, r, t)""",
                [x.grant_id for x in g],
                [x.application_id for x in g],
                [x.scheme for x in g],
                [x.programme for x in g],
                [x.instrument for x in g],
                [x.currency for x in g],
                [x.conditional for x in g],
                [json.dumps([list(s) for s in x.fund_shares]) for x in g],
                [json.dumps(x.grant_json) for x in g],
                [x.beneficiary_id for x in g],
                [x.revision for x in g],
                [x.at for x in g],
            )
        if w.slices:
            await self._execute(
                """INSERT INTO budget.slices (grant_id, pot_id, budget_year, programme, unit, fund, amount_minor, state)
                   SELECT * FROM unnest($1::uuid[], $2::text[], $3::int[], $4::text[], $5::text[], $6::text[], $7::bigint[],
                                        $8::text[])""",
                *_columns(w.slices, 8),
            )
        if w.released_slices:
            await self._execute(
                """UPDATE budget.slices s SET amount_minor = s.amount_minor - r.amount,
                          state = CASE WHEN s.amount_minor - r.amount = 0 THEN 'released' ELSE s.state END
                   FROM unnest($1::uuid[], $2::text[], $3::int[], $4::bigint[]) AS r(grant_id, pot_id, budget_year, amount)
                   WHERE s.grant_id = r.grant_id AND s.pot_id = r.pot_id AND s.budget_year = r.budget_year""",
                *_columns(w.released_slices, 4),
            )
        if w.grant_status:
            await self._execute(
                """UPDATE budget.grants g SET status = u.status, updated_at = u.at
                   FROM unnest($1::uuid[], $2::text[], $3::timestamptz[]) AS u(grant_id, status, at)
                   WHERE g.grant_id = u.grant_id""",
                *_columns(w.grant_status, 3),
            )
        if w.entries:
            await self._execute(
                """INSERT INTO budget.entries (pot_id, grant_id, kind, budget_year, amount_minor, unit, reason, cause, created_at)
                   SELECT * FROM unnest($1::text[], $2::uuid[], $3::text[], $4::int[], $5::bigint[], $6::text[], $7::text[],
                                        $8::text[], $9::timestamptz[])""",
                *_columns(w.entries, 9),
            )
        if w.pots:
            pots = sorted(w.pots.values(), key=lambda p: p.pot_id)
            await self._execute(
                """UPDATE budget.pots p SET committed_minor = u.committed, released_minor = u.released
                   FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS u(pot_id, committed, released)
                   WHERE p.pot_id = u.pot_id""",
                [p.pot_id for p in pots],
                [p.committed for p in pots],
                [p.released for p in pots],
            )
        if w.limits:
            keys = sorted(w.limits, key=sort_key)
            await self._execute(
                """UPDATE budget.beneficiary_limits l SET used = u.used, maximum = coalesce(u.maximum, l.maximum)
                   FROM unnest($1::text[], $2::text[], $3::int[], $4::bigint[], $5::bigint[])
                        AS u(limit_id, beneficiary_id, budget_year, used, maximum)
                   WHERE l.limit_id = u.limit_id AND l.beneficiary_id = u.beneficiary_id AND l.budget_year = u.budget_year""",
                [k.limit_id for k in keys],
                [k.beneficiary_id for k in keys],
                [k.budget_year for k in keys],
                [w.limits[k][0].used for k in keys],
                [w.limits[k][1] for k in keys],
            )
        if w.draws:
            await self._execute(
                """INSERT INTO budget.beneficiary_draws (grant_id, limit_id, beneficiary_id, budget_year, mark_year, kind, amount)
                   SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::int[], $5::int[], $6::text[], $7::bigint[])
                   ON CONFLICT (grant_id, limit_id, budget_year, mark_year) DO UPDATE SET amount = EXCLUDED.amount""",
                [g for g, _ in w.draws],
                [d.key.limit_id for _, d in w.draws],
                [d.key.beneficiary_id for _, d in w.draws],
                [d.key.budget_year for _, d in w.draws],
                [d.budget_year for _, d in w.draws],
                [draw_kind(d) for _, d in w.draws],
                [d.amount for _, d in w.draws],
            )
        if w.refusals:
            r = w.refusals
            await self._execute(
                """INSERT INTO budget.refusals
                          (application_id, revision, limit_id, message_key, budget_year, available, requested, unit, refused_at)
                   SELECT * FROM unnest($1::text[], $2::int[], $3::text[], $4::text[], $5::int[], $6::bigint[], $7::bigint[],
                                        $8::text[], $9::timestamptz[])""",
                [x.application_id for x in r],
                [x.revision for x in r],
                [x.refusal.limit for x in r],
                [x.refusal.message_key for x in r],
                [x.refusal.budget_year for x in r],
                [x.refusal.available for x in r],
                [x.refusal.requested for x in r],
                [x.refusal.unit for x in r],
                [x.at for x in r],
            )
        if w.decisions:
            ids = sorted(w.decisions)
            await self._execute(
                """INSERT INTO budget.decisions (application_id, revision, event_id, outcome, applied_at)
                   SELECT * FROM unnest($1::text[], $2::int[], $3::text[], $4::text[], $5::timestamptz[])
                   ON CONFLICT (application_id) DO UPDATE
                   SET revision = EXCLUDED.revision, event_id = EXCLUDED.event_id, outcome = EXCLUDED.outcome,
                       applied_at = EXCLUDED.applied_at
                   WHERE budget.decisions.revision < EXCLUDED.revision""",
                ids,
                *_columns([w.decisions[i] for i in ids], 4),
            )

    async def record_evaluation(
        self, evaluation_id: str, application_id: str, year: int, continues: bool, event_id: str, at: datetime
    ) -> bool:
        """Record an annual evaluation once; False if it was applied before (under any event id)."""
        row = await self._fetch(
            """INSERT INTO budget.evaluations (evaluation_id, application_id, year, continues, event_id, applied_at)
               VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING RETURNING true""",
            evaluation_id,
            application_id,
            year,
            continues,
            event_id,
            at,
        )
        return bool(row)

    # -- the yearly ceiling reset: set-based, one statement per step, whatever the number of grants --

    async def apply_reset(
        self,
        programme: str,
        budget_year: int,
        yearly_maximum: int | None,
        *,
        reset_id: str,
        opened_at: datetime,
        cause: str,
        at: datetime,
    ) -> ResetResult:
        """Open `budget_year` for `programme`, in the caller's transaction (which holds the programme
        FOR UPDATE): close the earlier years, cap conditional slices at the yearly maximum (the excess
        returns to the pot as release entries), open the year's slices (an open entry each).

        Each step is one SQL statement over all of the programme's grants: no loop per grant."""
        closed = await self.conn.execute(
            """UPDATE budget.slices SET state = 'closed'
               WHERE programme = $1 AND budget_year < $2 AND state IN ('open', 'scheduled')""",
            programme,
            budget_year,
        )
        # Capping and opening in ONE pass over the year's slices: each slice is written once.
        row = await self.conn.fetchrow(
            """WITH due AS (
                   SELECT s.grant_id, s.pot_id, s.unit, s.amount_minor AS old,
                          CASE WHEN $3::bigint IS NOT NULL AND s.unit <> 'count' AND g.conditional AND s.amount_minor > $3
                               THEN $3::bigint ELSE s.amount_minor END AS new
                   FROM budget.slices s JOIN budget.grants g USING (grant_id)
                   WHERE s.programme = $1 AND s.budget_year = $2 AND s.state = 'scheduled'
               ), opened AS (
                   UPDATE budget.slices s SET state = 'open', amount_minor = d.new
                   FROM due d
                   WHERE s.grant_id = d.grant_id AND s.pot_id = d.pot_id AND s.budget_year = $2
                   RETURNING d.grant_id, d.pot_id, d.unit, d.old, d.new
               ), released AS (
                   INSERT INTO budget.entries
                          (pot_id, grant_id, kind, budget_year, amount_minor, unit, reason, cause, created_at)
                   SELECT pot_id, grant_id, 'release', $2, old - new, unit, 'yearly_maximum', $4, $5 FROM opened
                   WHERE old > new
                   RETURNING pot_id, amount_minor
               ), opened_entries AS (
                   INSERT INTO budget.entries
                          (pot_id, grant_id, kind, budget_year, amount_minor, unit, reason, cause, created_at)
                   SELECT pot_id, grant_id, 'open', $2, new, unit, 'ceiling_reset', $4, $5 FROM opened WHERE new > 0
                   RETURNING 1
               ), pots AS (
                   UPDATE budget.pots p SET released_minor = p.released_minor + t.amount
                   FROM (SELECT pot_id, sum(amount_minor) AS amount FROM released GROUP BY pot_id) t
                   WHERE p.pot_id = t.pot_id
                   RETURNING p.pot_id
               )
               SELECT count(*) AS opened, count(*) FILTER (WHERE old > new) AS capped,
                      coalesce(sum(old - new), 0) AS amount, (SELECT count(*) FROM pots) AS pots,
                      (SELECT count(*) FROM opened_entries) AS entries
               FROM opened""",
            programme,
            budget_year,
            yearly_maximum,
            cause,
            at,
        )
        assert row is not None  # an aggregate SELECT returns one row
        opened, capped_count, capped_amount = int(row["opened"]), int(row["capped"]), int(row["amount"])
        if capped_count:
            await self._return_capped_draws(programme, budget_year)
        await self.conn.execute("UPDATE budget.programmes SET open_year = $2 WHERE programme = $1", programme, budget_year)
        await self.conn.execute(
            """INSERT INTO budget.budget_years (programme, budget_year, reset_id, yearly_maximum_minor, opened_at,
                                                applied_at, slices_opened, slices_capped, amount_capped_minor)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)""",
            programme,
            budget_year,
            reset_id,
            yearly_maximum,
            opened_at,
            at,
            int(opened),
            capped_count,
            capped_amount,
        )
        return ResetResult(int(opened), capped_count, capped_amount, int(closed.split()[-1]))

    async def _return_capped_draws(self, programme: str, budget_year: int) -> None:
        """What the grants capped by the opening of `budget_year` hold of their beneficiaries' ceilings,
        recomputed from their slices (as a release recomputes it), and each touched row's `used` from
        its draws: the room a cap returns to the pot returns to the beneficiary too.

        Set-based, from the programme's draws (none where its schemes have no beneficiary ceiling);
        the rows are locked in key order first, as every commitment locks them (lock 4)."""
        capped = """
            SELECT DISTINCT d.grant_id FROM budget.beneficiary_draws d JOIN budget.grants g USING (grant_id)
            WHERE g.programme = $1 AND EXISTS (
                SELECT 1 FROM budget.entries e
                WHERE e.grant_id = d.grant_id AND e.budget_year = $2 AND e.kind = 'release' AND e.reason = 'yearly_maximum')"""
        await self._execute(
            f"""WITH capped AS ({capped})
                SELECT 1 FROM budget.beneficiary_limits l
                WHERE (l.limit_id, l.beneficiary_id, l.budget_year) IN (
                    SELECT d.limit_id, d.beneficiary_id, d.budget_year
                    FROM budget.beneficiary_draws d JOIN capped USING (grant_id))
                ORDER BY l.limit_id, l.beneficiary_id, l.budget_year FOR UPDATE""",
            programme,
            budget_year,
        )
        await self._execute(
            f"""WITH capped AS ({capped}), money AS (
                    SELECT s.grant_id, s.budget_year, sum(s.amount_minor) AS amount
                    FROM budget.slices s JOIN capped USING (grant_id) WHERE s.unit <> 'count' GROUP BY s.grant_id, s.budget_year
                ), total AS (
                    SELECT grant_id, sum(amount) AS amount FROM money GROUP BY grant_id
                ), held AS (
                    SELECT d.grant_id, d.limit_id, d.budget_year, d.mark_year, d.amount AS old,
                           CASE d.kind WHEN 'yearly' THEN coalesce(y.amount, 0)
                                       WHEN 'total' THEN coalesce(t.amount, 0)
                                       WHEN 'years' THEN (coalesce(y.amount, 0) > 0)::int
                                       ELSE (coalesce(t.amount, 0) > 0)::int END AS new
                    FROM budget.beneficiary_draws d JOIN capped USING (grant_id)
                    LEFT JOIN money y ON y.grant_id = d.grant_id AND y.budget_year = d.mark_year
                    LEFT JOIN total t ON t.grant_id = d.grant_id
                )
                UPDATE budget.beneficiary_draws d SET amount = h.new FROM held h
                WHERE d.grant_id = h.grant_id AND d.limit_id = h.limit_id AND d.budget_year = h.budget_year
                  AND d.mark_year = h.mark_year AND h.new <> h.old""",
            programme,
            budget_year,
        )
        await self._execute(
            f"""WITH capped AS ({capped}), touched AS (
                    SELECT DISTINCT d.limit_id, d.beneficiary_id, d.budget_year
                    FROM budget.beneficiary_draws d JOIN capped USING (grant_id)
                ), held AS (
                    SELECT k.limit_id, k.beneficiary_id, k.budget_year,
                           CASE WHEN min(d.kind) = 'years' THEN count(DISTINCT d.mark_year) FILTER (WHERE d.amount > 0)
                                ELSE sum(d.amount) END AS used
                    FROM touched k JOIN budget.beneficiary_draws d USING (limit_id, beneficiary_id, budget_year)
                    GROUP BY k.limit_id, k.beneficiary_id, k.budget_year
                )
                UPDATE budget.beneficiary_limits l SET used = h.used FROM held h
                WHERE l.limit_id = h.limit_id AND l.beneficiary_id = h.beneficiary_id AND l.budget_year = h.budget_year
                  AND l.used <> h.used""",
            programme,
            budget_year,
        )

    async def write_capped_releases(
        self, programme: str, budget_year: int, headers: HeaderTemplate, *, namespace: uuid.UUID, reset_id: str, released_at: str
    ) -> int:
        """Write the GrantReleased of every grant the opening of `budget_year` capped into the outbox, in
        one statement (`CAPPED_RELEASES`); returns how many."""
        status = await self.conn.execute(
            CAPPED_RELEASES,
            programme,
            budget_year,
            namespace.bytes,
            reset_id,
            Topic.GRANT_RELEASED.value,
            *_header_pieces(headers),
            released_at,
        )
        self.statements += 1
        return int(status.split()[-1])

    async def year_opened(self, programme: str, budget_year: int) -> bool:
        return bool(
            await self.conn.fetchval(
                "SELECT EXISTS (SELECT 1 FROM budget.budget_years WHERE programme = $1 AND budget_year = $2)",
                programme,
                budget_year,
            )
        )

    async def request_reset(self, programme: str, budget_year: int, event_id: str, at: datetime) -> bool:
        """Record an operator's (or a job's) request to open a year; False if it was already asked for."""
        return bool(
            await self.conn.fetchval(
                """INSERT INTO budget.reset_requests (programme, budget_year, event_id, requested_at) VALUES ($1, $2, $3, $4)
               ON CONFLICT DO NOTHING RETURNING true""",
                programme,
                budget_year,
                event_id,
                at,
            )
        )

    async def programme_row(self, programme: str) -> asyncpg.Record | None:
        return await self.conn.fetchrow("SELECT * FROM budget.programmes WHERE programme = $1", programme)


def _grant_row(r: asyncpg.Record) -> GrantRow:
    shares = (
        [(str(f), int(n), int(d)) for f, n, d in json.loads(r["fund_shares"])]
        if isinstance(r["fund_shares"], str)
        else [(str(f), int(n), int(d)) for f, n, d in r["fund_shares"]]
    )
    return GrantRow(
        r["grant_id"],
        r["application_id"],
        r["scheme"],
        r["programme"],
        r["instrument"],
        r["currency"],
        r["status"],
        shares,
        r["beneficiary_id"],
        r["grant_revision"] or 1,
    )


def _columns(rows: Sequence[tuple[Any, ...]], width: int) -> list[list[Any]]:
    """Rows as `width` column lists, for unnest()."""
    return [[row[i] for row in rows] for i in range(width)] if rows else [[] for _ in range(width)]
