"""The budget ledger's tables (schema `budget`). Concurrency is settled by row locks on pots."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import yaml

from shared.events import ProposedGrant
from services.budget.domain import Draw, Pot, pot_for

DOCUMENT_POTS = Path(__file__).with_name("pots.yaml")


class PotsFileError(ValueError):
    def __init__(self, path: Path, key: str, problem: str) -> None:
        super().__init__(f"{path}: {key}: {problem}")


def read_pots(path: Path) -> list[dict[str, Any]]:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise PotsFileError(path, "(file)", str(error)) from None
    pots = data.get("pots") if isinstance(data, dict) else None
    if not isinstance(pots, list):
        raise PotsFileError(path, "pots", "must be a list of pots")
    required = {"pot_id": str, "programme": str, "fund": str, "currency": str, "total_minor": int, "source": str}
    for index, pot in enumerate(pots):
        for key, kind in required.items():
            if not isinstance(pot, dict) or not isinstance(pot.get(key), kind) or isinstance(pot.get(key), bool):
                raise PotsFileError(path, f"pots[{index}].{key}", f"required, a {kind.__name__}")
        if pot["currency"] not in ("EUR", "SEK", "NOK"):
            raise PotsFileError(path, f"pots[{index}].currency", "must be EUR, SEK or NOK")
        if pot["total_minor"] < 0:
            raise PotsFileError(path, f"pots[{index}].total_minor", "must not be negative")
        year = pot.get("budget_year")
        if year is not None and not isinstance(year, int):
            raise PotsFileError(path, f"pots[{index}].budget_year", "must be a year or absent")
    return pots


async def upsert_pots(conn: asyncpg.Connection, pots: Iterable[dict[str, Any]]) -> None:
    for pot in pots:
        await conn.execute(
            """INSERT INTO budget.pots (pot_id, programme, fund, currency, budget_year, total_minor, source)
               VALUES ($1, $2, $3, $4, $5, $6, $7)
               ON CONFLICT (pot_id) DO UPDATE SET total_minor = EXCLUDED.total_minor, source = EXCLUDED.source""",
            pot["pot_id"], pot["programme"], pot["fund"], pot["currency"], pot.get("budget_year"),
            pot["total_minor"], pot["source"],
        )


async def lock_pots(conn: asyncpg.Connection, programme: str, currency: str) -> list[Pot]:
    """Lock the programme's pots in that currency, always in pot_id order (no deadlocks)."""
    rows = await conn.fetch(
        """SELECT pot_id, fund, budget_year, total_minor, committed_minor, released_minor FROM budget.pots
           WHERE programme = $1 AND currency = $2 ORDER BY pot_id FOR UPDATE""",
        programme, currency,
    )
    return [Pot(**dict(r)) for r in rows]


async def already_decided(conn: asyncpg.Connection, application_id: str) -> bool:
    return bool(await conn.fetchval(
        """SELECT EXISTS (SELECT 1 FROM budget.grants WHERE application_id = $1)
               OR EXISTS (SELECT 1 FROM budget.refusals WHERE application_id = $1)""",
        application_id,
    ))


async def record_commitment(
    conn: asyncpg.Connection, application_id: str, grant_id: str, grant: ProposedGrant, draws: list[Draw],
    pots: list[Pot], need: dict[str, int], at: datetime,
) -> None:
    await conn.executemany(
        """INSERT INTO budget.entries (pot_id, application_id, kind, budget_year, amount_minor, currency, created_at)
           VALUES ($1, $2, 'commit', $3, $4, $5, $6)""",
        [(pot_for(d, pots).pot_id, application_id, d.budget_year, d.amount_minor, grant.currency, at)  # type: ignore[union-attr]
         for d in draws],
    )
    await conn.executemany(
        "UPDATE budget.pots SET committed_minor = committed_minor + $2 WHERE pot_id = $1", list(need.items())
    )
    await conn.execute(
        """INSERT INTO budget.grants (application_id, grant_id, programme, currency, grant_json, committed_at)
           VALUES ($1, $2, $3, $4, $5, $6)""",
        application_id, grant_id, grant.programme, grant.currency, grant.model_dump(mode="json"), at,
    )


async def record_refusal(conn: asyncpg.Connection, application_id: str, limit_id: str, message_key: str, at: datetime) -> None:
    await conn.execute(
        "INSERT INTO budget.refusals (application_id, limit_id, message_key, refused_at) VALUES ($1, $2, $3, $4)",
        application_id, limit_id, message_key, at,
    )


async def reconcile(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    """Pots whose balance differs from the sum of their entries (empty when the ledger is sound)."""
    rows = await conn.fetch(
        """SELECT p.pot_id, p.committed_minor, p.released_minor,
                  coalesce(sum(e.amount_minor) FILTER (WHERE e.kind = 'commit'), 0) AS entries_committed,
                  coalesce(sum(e.amount_minor) FILTER (WHERE e.kind = 'release'), 0) AS entries_released
           FROM budget.pots p LEFT JOIN budget.entries e USING (pot_id)
           GROUP BY p.pot_id
           HAVING p.committed_minor <> coalesce(sum(e.amount_minor) FILTER (WHERE e.kind = 'commit'), 0)
               OR p.released_minor <> coalesce(sum(e.amount_minor) FILTER (WHERE e.kind = 'release'), 0)"""
    )
    return [dict(r) for r in rows]
