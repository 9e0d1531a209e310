"""Notify's use cases: schedule what an event owes (exactly once), then deliver it (at least once)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from typing import Any

import structlog

from shared.delivery import UnitOfWork, describe_error
from shared.events import Event, NotificationSent
from services.notify import repository
from services.notify.domain import plan
from services.notify.mail import Mailer

log = structlog.get_logger("notify")

Transaction = Callable[[], AbstractAsyncContextManager[UnitOfWork]]


async def on_event(uow: UnitOfWork, event: Event, source_event_id: str) -> int:
    """Schedule every message `event` owes; returns how many were new."""
    scheduled = 0
    for planned in plan(event):
        if await repository.schedule(uow.conn, source_event_id, event.cloudevents_type(), planned):
            scheduled += 1
    return scheduled


class Dispatcher:
    """Sends scheduled messages. The row stays locked while it is sent and is marked sent in the same
    transaction that puts NotificationSent in the outbox; a crash after the send but before that
    commit sends the message once more (at most one visible duplicate, never a lost message)."""

    def __init__(self, transaction: Transaction, mailer: Mailer, max_attempts: int) -> None:
        self.transaction = transaction
        self.mailer = mailer
        self.max_attempts = max_attempts
        self._wake = asyncio.Event()
        self.sent = 0

    def wake(self) -> None:
        self._wake.set()

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            try:
                done = await self.dispatch_once()
            except Exception as error:
                log.warning("dispatch interrupted; retrying", error=describe_error(error))
                done = 0
                await asyncio.sleep(1)
            if done == 0:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=0.5)

    async def dispatch_once(self, limit: int = 20) -> int:
        async with self.transaction() as uow:
            rows = await repository.claim_due(uow.conn, limit)
            for row in rows:
                await self._deliver(uow, row)
        return len(rows)

    async def _deliver(self, uow: UnitOfWork, row: dict[str, Any]) -> None:
        notification_id = str(row["notification_id"])
        with structlog.contextvars.bound_contextvars(
            notification_id=notification_id, application_id=row["application_id"], recipient_ref=row["recipient_ref"]
        ):
            message = row["message"]
            try:
                await self.mailer.send(notification_id, message["to"], message["subject"], message["text"])
            except Exception as error:
                attempts = row["attempts"] + 1
                give_up = attempts >= self.max_attempts
                await repository.mark_failed_attempt(
                    uow.conn, row["notification_id"], describe_error(error), min(300.0, 2.0**attempts), give_up
                )
                log.warning("delivery failed", channel=row["channel"], attempts=attempts, gave_up=give_up,
                            error=type(error).__name__)
                return
            now = datetime.now(UTC)
            await repository.mark_sent(uow.conn, row["notification_id"], now)
            await uow.publish(NotificationSent(
                notification_id=notification_id,
                application_id=row["application_id"],
                source_event_id=row["source_event_id"],
                source_event_type=row["source_event_type"],
                channel=row["channel"],
                recipient_ref=row["recipient_ref"],
                template=row["template"],
                language=row["language"],
                sent_at=now,
            ))
            self.sent += 1
            log.info("notification sent", channel=row["channel"], template=row["template"])
