"""What operators read of the ledger (the read side beside the write-side `repository.py`):
balances per pot and year, beneficiary ceilings, and the reconciliation that proves every
materialised balance equals the sum of its entries. Plain reads; nothing here locks or writes."""

from __future__ import annotations

import json
from typing import Any

from shared.db import Connection


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
    "beneficiary ceiling differs from its draws": """
        SELECT l.limit_id || ' ' || l.beneficiary_id || ' ' || l.budget_year AS subject, l.used AS materialised,
               coalesce(d.held, 0) AS draws
        FROM budget.beneficiary_limits l LEFT JOIN (
            SELECT limit_id, beneficiary_id, budget_year,
                   CASE WHEN min(kind) = 'years' THEN count(DISTINCT mark_year) FILTER (WHERE amount > 0)
                        ELSE sum(amount) END AS held
            FROM budget.beneficiary_draws GROUP BY limit_id, beneficiary_id, budget_year) d
             USING (limit_id, beneficiary_id, budget_year)
        WHERE l.used <> coalesce(d.held, 0)""",
    "beneficiary ceiling overspent": """
        SELECT limit_id || ' ' || beneficiary_id || ' ' || budget_year AS subject, used, maximum
        FROM budget.beneficiary_limits WHERE maximum IS NOT NULL AND used > maximum""",
    "beneficiary draw differs from its grant's slices": """
        SELECT d.grant_id::text || ' ' || d.limit_id || ' ' || d.budget_year || ' ' || d.mark_year AS subject,
               d.amount AS draw, coalesce(s.money, 0) AS slices
        FROM budget.beneficiary_draws d
        LEFT JOIN (SELECT grant_id, budget_year, sum(amount_minor) AS money FROM budget.slices
                   WHERE unit <> 'count' GROUP BY grant_id, budget_year) s
             ON s.grant_id = d.grant_id AND s.budget_year = d.mark_year
        WHERE d.kind = 'yearly' AND d.amount <> coalesce(s.money, 0)
           OR d.kind = 'years' AND d.amount <> (CASE WHEN coalesce(s.money, 0) > 0 THEN 1 ELSE 0 END)""",
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


async def beneficiaries(conn: Connection, beneficiary_id: str | None = None) -> list[dict[str, Any]]:
    """Per beneficiary and ceiling: what its grants hold of it now, and the maximum it was held to."""
    rows = await conn.fetch(
        """SELECT limit_id, beneficiary_id, budget_year, unit, used, maximum FROM budget.beneficiary_limits
           WHERE $1::text IS NULL OR beneficiary_id = $1 ORDER BY beneficiary_id, limit_id, budget_year""",
        beneficiary_id,
    )
    return [dict(r) for r in rows]
