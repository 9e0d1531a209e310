"""Composition root of the budget service."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import structlog

from shared.delivery import Incoming
from shared.events import EligibilityDecided
from shared.logging import configure_logging
from shared.runtime import ServiceRuntime
from shared.topics import Topic
from services.budget import handlers, repository
from services.budget.settings import BudgetSettings

log = structlog.get_logger("budget")


def build(settings: BudgetSettings) -> ServiceRuntime:
    pots = repository.read_pots(repository.DOCUMENT_POTS)
    if settings.budget_pots_file:
        pots += repository.read_pots(Path(settings.budget_pots_file))  # validated now, not at first use
    runtime = ServiceRuntime("budget", settings, schema="budget")

    async def on_decided(incoming: Incoming) -> None:
        decided = incoming.parse(EligibilityDecided)
        with structlog.contextvars.bound_contextvars(application_id=decided.application_id):
            async with runtime.transaction(incoming) as uow:
                if uow.duplicate:
                    return
                result = await handlers.on_eligibility_decided(uow, decided)
            log.info("decision handled", result=result, outcome=decided.outcome)

    runtime.subscribe(Topic.ELIGIBILITY_DECIDED, on_decided)

    async def load_pots(pool: asyncpg.Pool) -> None:
        async with pool.acquire() as conn:
            await repository.upsert_pots(conn, pots)
        log.info("pots loaded", pots=len(pots))

    runtime.startup.append(load_pots)
    return runtime


def main() -> None:
    settings = BudgetSettings()
    configure_logging("budget", settings.log_format, settings.log_level)
    asyncio.run(build(settings).run())
