"""The budget ledger's tables (schema `budget`), in asyncpg. Concurrency is settled by PostgreSQL
row locks, always taken in the order the migration states: application advisory lock, programme,
grant, pots in pot_id order."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from services.budget.domain import BudgetConfig, Placement, PotBalance, Slice, SliceState
from shared.db import Connection

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
        for pot in config.pots:
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


# --- locks ------------------------------------------------------------------------------------------


async def lock_application(conn: Connection, application_id: str) -> None:
    """Serialise the decisions and releases of one application (lock 1 of the order)."""
    await conn.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", APPLICATION_LOCK_NAMESPACE, application_id)


@dataclass(frozen=True)
class ProgrammeState:
    programme: str
    currency: str
    open_year: int | None
    yearly_maximum: int | None
    """The maximum the CeilingReset of the open year set, if any."""
    yearly_maximum_required: bool


async def lock_programme(conn: Connection, programme: str, *, exclusive: bool) -> ProgrammeState | None:
    """Lock 2: FOR SHARE by commits and releases (they run side by side), FOR UPDATE by a reset."""
    mode = "FOR UPDATE" if exclusive else "FOR SHARE"
    row = await conn.fetchrow(
        f"SELECT programme, currency, open_year, yearly_maximum_required FROM budget.programmes WHERE programme = $1 {mode}",
        programme,
    )
    if row is None:
        return None
    maximum = None
    if row["open_year"] is not None:
        maximum = await conn.fetchval(
            "SELECT yearly_maximum_minor FROM budget.budget_years WHERE programme = $1 AND budget_year = $2",
            programme,
            row["open_year"],
        )
    return ProgrammeState(row["programme"], row["currency"], row["open_year"], maximum, row["yearly_maximum_required"])


async def lock_pots(conn: Connection, pot_ids: Iterable[str]) -> dict[str, PotBalance]:
    """Lock 4: the pots a grant touches, always in pot_id order."""
    rows = await conn.fetch(
        """SELECT pot_id, unit, total_minor, committed_minor, released_minor FROM budget.pots
           WHERE pot_id = ANY($1::text[]) ORDER BY pot_id FOR UPDATE""",
        sorted(set(pot_ids)),
    )
    return {
        r["pot_id"]: PotBalance(r["pot_id"], r["unit"], r["total_minor"], r["committed_minor"], r["released_minor"]) for r in rows
    }


# --- decisions -----------------------------------------------------------------------------------------


async def already_decided(conn: Connection, application_id: str) -> bool:
    return bool(
        await conn.fetchval(
            """SELECT EXISTS (SELECT 1 FROM budget.grants WHERE application_id = $1)
               OR EXISTS (SELECT 1 FROM budget.refusals WHERE application_id = $1)""",
            application_id,
        )
    )


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


async def record_commitment(
    conn: Connection,
    grant: NewGrant,
    placements: Sequence[Placement],
    states: Sequence[SliceState],
    *,
    cause: str,
    at: datetime,
) -> None:
    """The grant, its slices, one commit entry per slice (and an open entry for an open year's
    slice), and the pots' materialised balances: all in the caller's transaction."""
    await conn.execute(
        """INSERT INTO budget.grants (grant_id, application_id, scheme, programme, instrument, currency, conditional,
                                      fund_shares, status, grant_json, committed_at, updated_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'committed', $9, $10, $10)""",
        grant.grant_id,
        grant.application_id,
        grant.scheme,
        grant.programme,
        grant.instrument,
        grant.currency,
        grant.conditional,
        [list(s) for s in grant.fund_shares],
        grant.grant_json,
        at,
    )
    await conn.executemany(
        """INSERT INTO budget.slices (grant_id, pot_id, budget_year, programme, unit, fund, amount_minor, state)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8)""",
        [
            (grant.grant_id, p.pot_id, p.budget_year, grant.programme, p.unit, p.fund, p.amount, s)
            for p, s in zip(placements, states, strict=True)
        ],
    )
    entries = [(p, "commit", "committed") for p in placements]
    entries += [(p, "open", "committed_in_open_year") for p, s in zip(placements, states, strict=True) if s == "open"]
    await insert_entries(conn, grant.grant_id, entries, cause=cause, at=at)
    totals: dict[str, int] = {}
    for p in placements:
        totals[p.pot_id] = totals.get(p.pot_id, 0) + p.amount
    await conn.executemany(
        "UPDATE budget.pots SET committed_minor = committed_minor + $2 WHERE pot_id = $1", sorted(totals.items())
    )


async def insert_entries(
    conn: Connection, grant_id: str, entries: Sequence[tuple[Placement, str, str]], *, cause: str, at: datetime
) -> None:
    await conn.executemany(
        """INSERT INTO budget.entries
                          (pot_id, grant_id, kind, budget_year, amount_minor, unit, reason, cause, created_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)""",
        [
            (p.pot_id, grant_id, kind, p.budget_year, p.amount, p.unit, reason, cause, at)
            for p, kind, reason in entries
            if p.amount > 0
        ],
    )


async def record_refusal(
    conn: Connection,
    application_id: str,
    limit_id: str,
    message_key: str,
    budget_year: int | None,
    available: int | None,
    requested: int | None,
    unit: str | None,
    at: datetime,
) -> None:
    await conn.execute(
        """INSERT INTO budget.refusals
                  (application_id, limit_id, message_key, budget_year, available, requested, unit, refused_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8)""",
        application_id,
        limit_id,
        message_key,
        budget_year,
        available,
        requested,
        unit,
        at,
    )


# --- releases ----------------------------------------------------------------------------------------------


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


async def lock_grant(conn: Connection, application_id: str) -> GrantRow | None:
    """Lock 3: the grant a release changes."""
    row = await conn.fetchrow(
        """SELECT grant_id::text, application_id, scheme, programme, instrument, currency, status, fund_shares
           FROM budget.grants WHERE application_id = $1 FOR UPDATE""",
        application_id,
    )
    if row is None:
        return None
    shares = [(str(f), int(n), int(d)) for f, n, d in row["fund_shares"]]
    return GrantRow(
        row["grant_id"],
        row["application_id"],
        row["scheme"],
        row["programme"],
        row["instrument"],
        row["currency"],
        row["status"],
        shares,
    )


async def programme_of_grant(conn: Connection, application_id: str) -> str | None:
    """The programme of an application's grant (never changes, so read without a lock)."""
    value = await conn.fetchval("SELECT programme FROM budget.grants WHERE application_id = $1", application_id)
    return str(value) if value is not None else None


async def slices_of(conn: Connection, grant_id: str) -> list[Slice]:
    rows = await conn.fetch(
        """SELECT pot_id, budget_year, unit, fund, amount_minor, state FROM budget.slices
           WHERE grant_id = $1 ORDER BY budget_year, pot_id""",
        grant_id,
    )
    return [Slice(r["pot_id"], r["budget_year"], r["unit"], r["fund"], r["amount_minor"], r["state"]) for r in rows]


async def record_release(
    conn: Connection,
    grant_id: str,
    releases: Sequence[Placement],
    *,
    reason: str,
    withdraw: bool,
    cause: str,
    at: datetime,
) -> None:
    await insert_entries(conn, grant_id, [(p, "release", reason) for p in releases], cause=cause, at=at)
    await conn.executemany(
        """UPDATE budget.slices SET amount_minor = amount_minor - $4,
                  state = CASE WHEN amount_minor - $4 = 0 THEN 'released' ELSE state END
           WHERE grant_id = $1 AND pot_id = $2 AND budget_year = $3 AND state = 'scheduled'""",
        [(grant_id, p.pot_id, p.budget_year, p.amount) for p in releases],
    )
    totals: dict[str, int] = {}
    for p in releases:
        totals[p.pot_id] = totals.get(p.pot_id, 0) + p.amount
    await conn.executemany(
        "UPDATE budget.pots SET released_minor = released_minor + $2 WHERE pot_id = $1", sorted(totals.items())
    )
    await conn.execute(
        f"""UPDATE budget.grants SET updated_at = $2{", status = 'withdrawn'" if withdraw else ""}
            WHERE grant_id = $1""",
        grant_id,
        at,
    )


# --- the yearly ceiling reset: set-based, one statement per step, whatever the number of grants --------------


@dataclass(frozen=True)
class ResetResult:
    slices_opened: int
    slices_capped: int
    amount_capped_minor: int
    slices_closed: int


async def apply_reset(
    conn: Connection,
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
    closed = await conn.execute(
        """UPDATE budget.slices SET state = 'closed'
           WHERE programme = $1 AND budget_year < $2 AND state IN ('open', 'scheduled')""",
        programme,
        budget_year,
    )
    capped_count, capped_amount = 0, 0
    if yearly_maximum is not None:
        row = await conn.fetchrow(
            """WITH over AS (
                   SELECT s.grant_id, s.pot_id, s.budget_year, s.unit, s.amount_minor - $3 AS excess
                   FROM budget.slices s JOIN budget.grants g USING (grant_id)
                   WHERE s.programme = $1 AND s.budget_year = $2 AND s.state = 'scheduled' AND s.unit <> 'count'
                     AND g.conditional AND s.amount_minor > $3
               ), cut AS (
                   UPDATE budget.slices s SET amount_minor = s.amount_minor - o.excess
                   FROM over o
                   WHERE s.grant_id = o.grant_id AND s.pot_id = o.pot_id AND s.budget_year = o.budget_year
                   RETURNING s.grant_id
               ), entries AS (
                   INSERT INTO budget.entries
                          (pot_id, grant_id, kind, budget_year, amount_minor, unit, reason, cause, created_at)
                   SELECT pot_id, grant_id, 'release', budget_year, excess, unit, 'yearly_maximum', $4, $5 FROM over
                   RETURNING pot_id, amount_minor
               ), pots AS (
                   UPDATE budget.pots p SET released_minor = p.released_minor + t.amount
                   FROM (SELECT pot_id, sum(amount_minor) AS amount FROM entries GROUP BY pot_id) t
                   WHERE p.pot_id = t.pot_id
                   RETURNING p.pot_id
               )
               SELECT (SELECT count(*) FROM cut) AS n, (SELECT coalesce(sum(excess), 0) FROM over) AS amount,
                      (SELECT count(*) FROM pots) AS pots""",
            programme,
            budget_year,
            yearly_maximum,
            cause,
            at,
        )
        assert row is not None  # an aggregate SELECT always returns its one row
        capped_count, capped_amount = int(row["n"]), int(row["amount"])
    opened = await conn.fetchval(
        """WITH opened AS (
               UPDATE budget.slices SET state = 'open'
               WHERE programme = $1 AND budget_year = $2 AND state = 'scheduled'
               RETURNING grant_id, pot_id, budget_year, amount_minor, unit
           ), entries AS (
               INSERT INTO budget.entries
                          (pot_id, grant_id, kind, budget_year, amount_minor, unit, reason, cause, created_at)
               SELECT pot_id, grant_id, 'open', budget_year, amount_minor, unit, 'ceiling_reset', $3, $4
               FROM opened WHERE amount_minor > 0
               RETURNING 1
           )
           SELECT count(*) FROM opened""",
        programme,
        budget_year,
        cause,
        at,
    )
    await conn.execute("UPDATE budget.programmes SET open_year = $2 WHERE programme = $1", programme, budget_year)
    await conn.execute(
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


async def year_opened(conn: Connection, programme: str, budget_year: int) -> bool:
    return bool(
        await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM budget.budget_years WHERE programme = $1 AND budget_year = $2)",
            programme,
            budget_year,
        )
    )


async def request_reset(conn: Connection, programme: str, budget_year: int, event_id: str, at: datetime) -> bool:
    """Record an operator's (or a job's) request to open a year; False if it was already asked for."""
    return bool(
        await conn.fetchval(
            """INSERT INTO budget.reset_requests (programme, budget_year, event_id, requested_at) VALUES ($1, $2, $3, $4)
           ON CONFLICT DO NOTHING RETURNING true""",
            programme,
            budget_year,
            event_id,
            at,
        )
    )


async def programme_row(conn: Connection, programme: str) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM budget.programmes WHERE programme = $1", programme)


# --- what operators see ----------------------------------------------------------------------------------------


async def balances(conn: Connection, programme: str | None = None) -> list[dict[str, Any]]:
    """Per pot and budget year: the pot's total, and the year's committed, released and opened sums.

    `budget_year` None is the pot's own line: its total, all committed, all released, available."""
    rows = await conn.fetch(
        """WITH years AS (
               SELECT pot_id, budget_year,
                      coalesce(sum(amount_minor) FILTER (WHERE kind = 'commit'), 0)::bigint AS committed,
                      coalesce(sum(amount_minor) FILTER (WHERE kind = 'release'), 0)::bigint AS released,
                      coalesce(sum(amount_minor) FILTER (WHERE kind = 'open'), 0)::bigint AS opened
               FROM budget.entries GROUP BY pot_id, budget_year
           )
           SELECT p.pot_id, p.programme, p.unit, p.fund, p.instruments, p.budget_year AS pot_year, p.total_minor,
                  p.committed_minor, p.released_minor, y.budget_year, y.committed, y.released, y.opened
           FROM budget.pots p LEFT JOIN years y USING (pot_id)
           WHERE $1::text IS NULL OR p.programme = $1
           ORDER BY p.programme, p.unit, p.pot_id, y.budget_year NULLS FIRST""",
        programme,
    )
    return [dict(r) for r in rows]


RECONCILIATION_CHECKS: dict[str, str] = {
    "pot balance differs from its entries": """
        SELECT p.pot_id AS subject, p.committed_minor AS materialised_committed,
               p.released_minor AS materialised_released,
               coalesce(e.committed, 0) AS entries_committed, coalesce(e.released, 0) AS entries_released
        FROM budget.pots p LEFT JOIN (
            SELECT pot_id, sum(amount_minor) FILTER (WHERE kind = 'commit') AS committed,
                           sum(amount_minor) FILTER (WHERE kind = 'release') AS released
            FROM budget.entries GROUP BY pot_id) e USING (pot_id)
        WHERE p.committed_minor <> coalesce(e.committed, 0) OR p.released_minor <> coalesce(e.released, 0)""",
    "slice amount differs from its entries": """
        SELECT s.grant_id::text || ' ' || s.pot_id || ' ' || s.budget_year AS subject, s.amount_minor AS materialised,
               coalesce(e.net, 0) AS entries
        FROM budget.slices s LEFT JOIN (
            SELECT grant_id, pot_id, budget_year,
                   coalesce(sum(amount_minor) FILTER (WHERE kind = 'commit'), 0)
                 - coalesce(sum(amount_minor) FILTER (WHERE kind = 'release'), 0) AS net
            FROM budget.entries GROUP BY grant_id, pot_id, budget_year) e USING (grant_id, pot_id, budget_year)
        WHERE s.amount_minor <> coalesce(e.net, 0)""",
    "pot balance differs from its slices": """
        SELECT p.pot_id AS subject, p.committed_minor - p.released_minor AS materialised,
               coalesce(s.amount, 0) AS slices
        FROM budget.pots p LEFT JOIN (SELECT pot_id, sum(amount_minor) AS amount FROM budget.slices GROUP BY pot_id) s
             USING (pot_id)
        WHERE p.committed_minor - p.released_minor <> coalesce(s.amount, 0)""",
    "entry unit differs from its pot's": """
        SELECT e.entry_id::text AS subject, e.unit AS entry_unit, p.unit AS pot_unit
        FROM budget.entries e JOIN budget.pots p USING (pot_id) WHERE e.unit <> p.unit""",
    "pot overspent": """
        SELECT pot_id AS subject, total_minor, committed_minor, released_minor FROM budget.pots
        WHERE committed_minor - released_minor > total_minor""",
}


async def reconcile(conn: Connection) -> list[dict[str, Any]]:
    """Every difference between a materialised balance and its entries (empty when the ledger is sound).

    Runs in one REPEATABLE READ snapshot, so concurrent commits cannot make it see half a transaction."""
    problems: list[dict[str, Any]] = []
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        for check, sql in RECONCILIATION_CHECKS.items():
            problems += [{"check": check, **dict(r)} for r in await conn.fetch(sql)]
    return problems


def dumps(value: Any) -> str:
    return json.dumps(value, default=str, sort_keys=True)
