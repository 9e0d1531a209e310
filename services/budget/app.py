"""Composition root of the budget service: reads the settings and the budget figures, builds the
runtime, and subscribes the two use cases that consume events."""

from __future__ import annotations

import asyncio

import asyncpg
import structlog

from services.budget import config as budget_config
from services.budget import handlers, repository
from services.budget.domain import BudgetConfig
from services.budget.repository import LedgerRepository
from services.budget.settings import BudgetSettings
from shared.delivery import UnitOfWork
from shared.events import CeilingReset, ClusterEvaluated, EligibilityDecided
from shared.logging import configure_logging
from shared.records import Delivery
from shared.runtime import ServiceRuntime

log = structlog.get_logger("budget")


def build(settings: BudgetSettings, config: BudgetConfig | None = None) -> ServiceRuntime[LedgerRepository]:
    # Validated now, not at first use: a bad file stops the service with the file, key and problem.
    config = config or budget_config.load(settings.budget_pots_file)
    runtime: ServiceRuntime[LedgerRepository] = ServiceRuntime("budget", settings, schema="budget", repositories=LedgerRepository)

    async def on_decided(uow: UnitOfWork[LedgerRepository], deliveries: list[Delivery[EligibilityDecided]]) -> None:
        # The whole batch at once: its locks taken once, in order; its writes set-based.
        items = [handlers.Item(d.event, d.event_id, d) for d in deliveries]
        results = await handlers.decide_batch(uow, items, config)
        for item, result in zip(items, results, strict=True):
            log.info(
                "decision handled",
                application_id=item.event.application_id,
                revision=item.event.revision,
                result=result,
                outcome=item.event.outcome,
            )

    async def on_reset(uow: UnitOfWork[LedgerRepository], deliveries: list[Delivery[CeilingReset]]) -> None:
        for delivery in deliveries:
            with structlog.contextvars.bound_contextvars(reset_id=delivery.event.reset_id):
                await handlers.on_ceiling_reset(uow, delivery.event, cause=delivery.event_id, delivery=delivery)

    runtime.on(EligibilityDecided, on_decided)

    async def on_evaluated(uow: UnitOfWork[LedgerRepository], deliveries: list[Delivery[ClusterEvaluated]]) -> None:
        for delivery in deliveries:
            with structlog.contextvars.bound_contextvars(application_id=delivery.event.application_id):
                await handlers.on_cluster_evaluated(uow, delivery.event, cause=delivery.event_id, delivery=delivery)

    runtime.on(CeilingReset, on_reset)
    runtime.on(ClusterEvaluated, on_evaluated)

    async def load_pots(pool: asyncpg.Pool) -> None:
        # Another replica may be deciding a batch on the same programmes and pots while this one starts:
        # PostgreSQL may then pick this transaction as a deadlock's victim. It changed nothing; try again.
        for attempt in range(1, LOAD_ATTEMPTS + 1):
            try:
                async with pool.acquire() as conn:
                    loaded = await repository.load_config(conn, config)
                break
            except (asyncpg.DeadlockDetectedError, asyncpg.SerializationError) as error:
                if attempt == LOAD_ATTEMPTS:
                    raise
                log.warning("pots not loaded; trying again", error=type(error).__name__, attempt=attempt)
                await asyncio.sleep(0.2 * attempt)
        log.info("pots loaded", pots=loaded, programmes=len(config.programmes), ceilings=len(config.ceilings))

    runtime.startup.append(load_pots)
    return runtime


#: Start-up attempts to load the pots when PostgreSQL resolves a deadlock against another replica.
LOAD_ATTEMPTS = 5


def main() -> None:
    settings = BudgetSettings()
    configure_logging("budget", settings.log_format, settings.log_level)
    asyncio.run(build(settings).run())
