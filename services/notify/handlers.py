"""Notify's use cases: schedule what an event owes (exactly once), then deliver it.

Scheduling runs in the inbox transaction of the consumed event: one row per message with a unique
dedupe key (event id, channel, recipient), so a redelivered event schedules nothing twice.

Delivery: a worker locks one due row (FOR UPDATE SKIP LOCKED), sends it, and in the SAME
transaction marks it sent and writes NotificationSent into the outbox. A crash after the send and
before that commit leaves the row scheduled: it is sent once more (at most one visible duplicate
per crash, never a lost message), with the same Message-ID / X-Clustergrants-Delivery id so the
receiver can drop it. A failed attempt is recorded with exponential back-off; after the channel's
maximum the row is parked as `dead` for an operator (services/notify/cli.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta

import structlog
from opentelemetry import context as otel_context
from opentelemetry.trace import SpanKind

from services.notify import repository
from services.notify.domain import Subscriptions, plan, redact, retry_delay_s
from services.notify.i18n import Catalog
from services.notify.mail import Mailer, compose
from services.notify.render import StoredDecision, render_email
from services.notify.repository import DueNotification
from services.notify.settings import NotifySettings
from services.notify.webhooks import WebhookSender
from shared.cloudevents import Attributes, attributes_for, to_http_headers
from shared.delivery import UnitOfWork, event_row
from shared.events import (
    EVENTS_BY_TYPE,
    ApplicationRejected,
    CriterionResult,
    EligibilityDecided,
    Event,
    NotificationSent,
)
from shared.tracing import context_from, span, traceparent_headers

log = structlog.get_logger("notify")

DECISION_POLL_S = 0.25
Transaction = Callable[[], AbstractAsyncContextManager[UnitOfWork]]


def _cloudevent(
    event: Event, source_event_id: str, attributes: Attributes | None, trace: otel_context.Context | None
) -> dict[str, str | None]:
    return {
        "id": source_event_id,
        "type": event.cloudevents_type(),
        "source": attributes.source if attributes else "/clustergrants/unknown",
        "time": attributes.time if attributes else None,
        "subject": attributes.subject if attributes else event.subject(),
        "correlationid": attributes.correlationid if attributes else None,
        # The trace of the consumed event: delivery, later and in another task, continues it.
        "traceparent": dict(traceparent_headers(trace)).get("traceparent"),
    }


async def on_event(
    uow: UnitOfWork,
    event: Event,
    source_event_id: str,
    attributes: Attributes | None,
    subscriptions: Subscriptions,
    *,
    ref_key: bytes,
    trace: otel_context.Context | None = None,
) -> int:
    """Schedule every message `event` owes, in the caller's (inbox) transaction; returns how many were new."""
    conn = uow.conn
    if isinstance(event, EligibilityDecided):
        stored = {"criteria": [c.model_dump(mode="json") for c in event.criteria], "time_zone": event.time_zone}
        await repository.store_decision(conn, event.application_id, source_event_id, stored)
    payload = {"event": event.model_dump(mode="json"), "ce": _cloudevent(event, source_event_id, attributes, trace)}
    scheduled = 0
    for planned in plan(event, subscriptions, ref_key=ref_key):
        # Due at once; a grant e-mail whose decision has not arrived yet is postponed at send time
        # (DecisionPending): checking here would race with the decision's own, concurrent transaction.
        if await repository.schedule(conn, source_event_id, event.cloudevents_type(), planned, payload):
            scheduled += 1
    return scheduled


class DecisionPending(Exception):
    """A grant e-mail's eligibility decision has not arrived yet: look again shortly."""


class PermanentFailure(Exception):
    """The message can never be delivered as it stands (e.g. its subscription was removed): park it now."""


class Dispatcher:
    """Workers that deliver due messages, one row and one transaction at a time."""

    def __init__(
        self,
        transaction: Transaction,
        settings: NotifySettings,
        catalog: Catalog,
        mailer: Mailer,
        webhooks: WebhookSender | None,
        subscriptions: Subscriptions,
    ) -> None:
        self.transaction = transaction
        self.settings = settings
        self.catalog = catalog
        self.mailer = mailer
        self.webhooks = webhooks
        self.subscriptions = subscriptions
        self._wake = asyncio.Event()
        self.sent = 0
        self.failed = 0

    def wake(self) -> None:
        self._wake.set()

    async def run(self, stopping: asyncio.Event) -> None:
        workers = [asyncio.create_task(self._worker(stopping)) for _ in range(self.settings.notify_dispatch_workers)]
        try:
            await asyncio.gather(*workers)
        finally:
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)

    async def _worker(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            try:
                delivered = await self.dispatch_one()
            except Exception as error:
                log.warning("dispatch interrupted; retrying", error=type(error).__name__)
                delivered = False
                await asyncio.sleep(1)
            if not delivered:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=self.settings.notify_poll_interval_s)

    async def dispatch_one(self) -> bool:
        """Deliver the next due message, if any; True if there was one (delivered or not)."""
        async with self.transaction() as uow:
            row = await repository.claim_next(uow.conn)
            if row is None:
                return False
            await self._deliver(uow, row)
        return True

    async def _deliver(self, uow: UnitOfWork, row: DueNotification) -> None:
        notification_id = str(row["notification_id"])
        ce = (row["payload"] or {}).get("ce") or {}
        parent = context_from({"traceparent": ce["traceparent"]} if ce.get("traceparent") else None)
        with (
            span(f"notify {row['channel']}", parent, SpanKind.PRODUCER),
            structlog.contextvars.bound_contextvars(
                notification_id=notification_id,
                application_id=row["application_id"],
                source_event_id=row["source_event_id"],
                channel=row["channel"],
                recipient_ref=row["recipient_ref"],
            ),
        ):
            personal: list[str] = []
            try:
                if row["channel"] == "email":
                    await self._send_email(uow, row, notification_id, personal)
                else:
                    await self._send_webhook(row, notification_id)
            except DecisionPending:
                await repository.postpone(uow.conn, row["notification_id"], DECISION_POLL_S)
                return
            except Exception as error:
                await self._failed(uow, row, error, personal)
                return
            self._maybe_crash()
            now = datetime.now(UTC)
            await repository.mark_sent(uow.conn, row["notification_id"], now)
            await self._publish_sent(uow, row, notification_id, now)
            self.sent += 1
            log.info("notification sent", template=row["template"], attempts=row["attempts"] + 1)

    async def _send_email(self, uow: UnitOfWork, row: DueNotification, notification_id: str, personal: list[str]) -> None:
        """Render in the applicant's language at send time and send. `personal` receives the contact
        details used, so that an error text can be scrubbed of them before it is logged or stored."""
        event = _event_of(row)
        if isinstance(event, ApplicationRejected):
            if event.contact is None:
                raise PermanentFailure("rejection without a contact")
            contact = event.contact
        else:
            # (ignore below) every other event notify e-mails has a recipient; Event does not
            contact = event.recipient.contact  # type: ignore[attr-defined]
        personal += [contact.email, contact.name]
        stored = None
        if row["template"].startswith("grant.") and row["application_id"]:
            found = await repository.decision(uow.conn, row["application_id"])
            waited = datetime.now(UTC) - row["scheduled_at"]
            if found is None and waited < timedelta(seconds=self.settings.notify_decision_wait_s):
                raise DecisionPending  # the e-mail explains the criteria too, once the decision is here
            if found is not None:
                criteria = [CriterionResult.model_validate(c) for c in found["criteria"]]
                stored = StoredDecision(criteria, found["time_zone"])
        email = render_email(self.catalog, event, stored)
        if email.problems:
            # Keys and placeholder names only: what a translator must add, never a value.
            log.warning("message rendered with fallbacks", language=email.language, problems=email.problems[:20])
        message = compose(notification_id, self.settings.mail_from, contact.email, email)
        await self.mailer.send(message)

    async def _send_webhook(self, row: DueNotification, notification_id: str) -> None:
        subscription = self.subscriptions.by_id(row["subscription_id"] or "")
        if subscription is None or self.webhooks is None:
            raise PermanentFailure(f"subscription {row['subscription_id']} is no longer configured")
        event = _event_of(row)
        assert row["payload"] is not None  # _event_of refuses a row without its stored event
        ce = row["payload"]["ce"]
        attributes = Attributes(
            id=ce["id"],
            source=ce["source"],
            type=ce["type"],
            time=ce.get("time"),
            subject=ce.get("subject"),
            correlationid=ce.get("correlationid"),
        )
        headers = to_http_headers(attributes)
        await self.webhooks.send(subscription, notification_id, event.model_dump_json().encode(), headers)

    async def _failed(self, uow: UnitOfWork, row: DueNotification, error: Exception, personal: list[str]) -> None:
        attempts = row["attempts"] + 1
        s = self.settings
        limit = s.notify_max_attempts if row["channel"] == "email" else s.notify_webhook_max_attempts
        dead = attempts >= limit or isinstance(error, PermanentFailure)
        text = redact(f"{type(error).__name__}: {error}", *personal)
        delay = retry_delay_s(attempts, s.notify_retry_base_s, s.notify_retry_cap_s, random.uniform(0.5, 1.0))
        await repository.mark_failed_attempt(uow.conn, row["notification_id"], text, delay, dead)
        self.failed += 1
        log.warning(
            "delivery failed; parked as dead letter" if dead else "delivery failed; will retry",
            attempts=attempts,
            retry_in_s=None if dead else round(delay, 2),
            error=text[:300],
        )

    async def _publish_sent(self, uow: UnitOfWork, row: DueNotification, notification_id: str, now: datetime) -> None:
        sent = NotificationSent(
            notification_id=notification_id,
            application_id=row["application_id"],
            source_event_id=row["source_event_id"],
            source_event_type=row["source_event_type"],
            channel=row["channel"],
            recipient_ref=row["recipient_ref"],
            template=row["template"],
            language=row["language"],
            sent_at=now,
        )
        ce = (row["payload"] or {}).get("ce") or {}
        attributes = attributes_for(
            sent, source=uow.source, correlation_id=ce.get("correlationid"), causation_id=row["source_event_id"]
        )
        await uow.add(event_row(sent, attributes))

    def _maybe_crash(self) -> None:
        limit = self.settings.notify_fault_exit_after_sends
        if limit and self.sent + 1 >= limit:
            log.warning("fault injection: exiting after the send, before recording it")
            os._exit(70)


def _event_of(row: DueNotification) -> Event:
    payload = row["payload"]
    model = EVENTS_BY_TYPE.get(row["source_event_type"])
    if payload is None or model is None:
        raise PermanentFailure("nothing stored to send (delivered before, or an unknown event type)")
    return model.model_validate(payload["event"])
