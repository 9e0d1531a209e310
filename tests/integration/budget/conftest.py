"""The budget's use cases on the real PostgreSQL, in units of work built from the seedwork (the
inbox claim and the outbox in one transaction, as `ServiceRuntime.transaction` does)."""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import asyncpg
import pytest

from services.budget import handlers, repository, views
from services.budget.domain import BudgetConfig
from services.budget.repository import LedgerRepository
from shared.delivery import UnitOfWork, claim
from shared.events import CeilingReset, EligibilityDecided
from shared.money import Money

T = TypeVar("T")
GROUP = "clustergrants.budget"


@dataclass
class Ledger:
    pool: asyncpg.Pool

    async def in_uow(self, work: Callable[[UnitOfWork[LedgerRepository]], Awaitable[T]], event_id: str | None = None) -> T | None:
        """One transaction: claim `event_id` (None if it was claimed before), then `work`."""
        async with self.pool.acquire() as conn, conn.transaction():
            if event_id is not None and not await claim(conn, "budget", GROUP, ("/clustergrants/eligibility", event_id)):
                return None
            uow = UnitOfWork(conn=conn, schema="budget", source="/clustergrants/budget", repo=LedgerRepository(conn))
            return await work(uow)

    async def load(self, config: BudgetConfig) -> None:
        async with self.pool.acquire() as conn:
            await repository.load_config(conn, config)

    async def decide(self, decided: EligibilityDecided, config: BudgetConfig, event_id: str | None = None) -> str | None:
        event_id = event_id or str(uuid.uuid4())
        return await self.in_uow(lambda uow: handlers.on_eligibility_decided(uow, decided, config, cause=event_id), event_id)

    async def reset(self, programme: str, year: int, maximum: Money | None = None) -> handlers.ResetOutcome | None:
        event = CeilingReset(
            reset_id=f"{programme}/{year}",
            programme=programme,
            budget_year=year,
            opened_at=datetime.now(UTC),
            yearly_maximum=maximum,
        )
        event_id = str(uuid.uuid4())
        return await self.in_uow(lambda uow: handlers.on_ceiling_reset(uow, event, cause=event_id), event_id)

    async def pot(self, pot_id: str) -> asyncpg.Record:
        row = await self.pool.fetchrow("SELECT * FROM budget.pots WHERE pot_id = $1", pot_id)
        assert row is not None, f"no pot {pot_id}"
        return row

    async def reconcile(self) -> list[dict[str, Any]]:
        async with self.pool.acquire() as conn:
            return await views.reconcile(conn)

    async def outbox(self, event_type: str, application_id: str | None = None) -> list[dict[str, Any]]:
        rows = await self.pool.fetch(
            """SELECT payload FROM budget.outbox
               WHERE headers @> jsonb_build_array(jsonb_build_array('ce_type', $1::text)) ORDER BY id""",
            f"{event_type}.v1",
        )
        bodies = [json.loads(bytes(r["payload"])) for r in rows]
        return [b for b in bodies if application_id is None or b.get("application_id") == application_id]


@pytest.fixture
def ledger(pool: asyncpg.Pool) -> Ledger:
    return Ledger(pool)


@pytest.fixture
def programme() -> str:
    """A programme of this test alone, so tests sharing the session database never meet."""
    return f"t{secrets.token_hex(4)}"
