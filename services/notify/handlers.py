"""Notify's use cases: schedule what an event owes (exactly once), then deliver it.

Scheduling runs in the inbox transaction of the consumed batch: one row per message with a unique
dedupe key (event id, channel, recipient), all of the batch's rows in one statement, so a redelivered
event schedules nothing twice. Handlers reach the tables only through `uow.repo` (NotifyRepository).

Delivery: a worker locks a batch of due rows (FOR UPDATE SKIP LOCKED LIMIT NOTIFY_DISPATCH_BATCH),
sends them, and in the SAME transaction marks the sent ones with one statement and writes their
NotificationSent into the outbox. A crash after a send and before that commit leaves the batch's rows
scheduled: they are sent once more (at most one visible duplicate per message of the batch in flight,
never a lost message), with the same Message-ID / X-Clustergrants-Delivery id so the receiver can
drop it. A failed attempt is recorded with exponential back-off; after the channel's
maximum the row is parked as `dead` for an operator (services/notify/cli.py).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import random
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog
from opentelemetry import context as otel_context
from opentelemetry.trace import SpanKind

from services.notify.domain import Subscriptions, email_template, plan, recipient_ref, redact, retry_delay_s
from services.notify.i18n import Catalog
from services.notify.mail import MailerPool, MailSender, compose
from services.notify.render import StoredDecision, render_email
from services.notify.repository import (
    DueNotification,
    GrantRecipient,
    NotifyRepository,
    Scheduled,
    StoredDecisionRow,
    stored_copy,
)
from services.notify.settings import NotifySettings
from services.notify.webhooks import WebhookSender
from shared.cloudevents import Attributes, attributes_for, to_http_headers
from shared.delivery import UnitOfWork, event_row
from shared.events import (
    EVENTS_BY_TYPE,
    ApplicationRejected,
    CeilingReset,
    EligibilityDecided,
    Event,
    GrantCommitted,
    GrantReleased,
    Language,
    NotificationSent,
    Recipient,
)
from shared.records import Delivery
from shared.tracing import context_from, span, traceparent_headers

log = structlog.get_logger("notify")

Transaction = Callable[[], AbstractAsyncContextManager[UnitOfWork[NotifyRepository]]]


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


async def on_events(
    uow: UnitOfWork[NotifyRepository],
    deliveries: Sequence[Delivery[Event]],
    subscriptions: Subscriptions,
    *,
    ref_key: bytes,
) -> int:
    """Schedule every message a consumed batch owes, in its (inbox) transaction, with one statement for
    the messages and one each for the decisions and the grants' recipients kept; returns how many
    messages were new. A CeilingReset forgets the recipients of its programme's grants that ended
    before its year (they can no longer change)."""
    repo = uow.repo
    events = [d.event for d in deliveries]
    # The batch's own commitments first: a release consumed in the same batch finds its recipient.
    await repo.store_recipients([GrantRecipient.of(e) for e in events if isinstance(e, GrantCommitted)])
    recipients = await repo.recipients(
        [(e.grant_id, e.application_id) for e in events if isinstance(e, GrantReleased) and email_template(e) is not None]
    )
    decisions: list[StoredDecisionRow] = []
    messages: list[Scheduled] = []
    for delivery in deliveries:
        event = delivery.event
        if isinstance(event, EligibilityDecided):
            stored = StoredDecision(event.criteria, event.time_zone)
            decisions.append(StoredDecisionRow(event.application_id, delivery.event_id, stored))
        elif isinstance(event, CeilingReset):
            forgotten = await repo.forget_recipients(event.programme, event.budget_year)
            if forgotten:
                log.info("grant recipients forgotten", programme=event.programme, before=event.budget_year, grants=forgotten)
        trace = context_from(delivery.record.headers) if delivery.record is not None else None
        ce = _cloudevent(event, delivery.event_id, delivery.attributes, trace)
        payload = stored_copy(event, ce)
        recipient = recipients.get((event.grant_id, event.application_id)) if isinstance(event, GrantReleased) else None
        # Due at once; a grant e-mail whose decision (a release e-mail whose recipient) has not arrived
        # yet is not claimed until it has (NotifyRepository.claim_due): checking here would race with
        # the other event's own transaction.
        messages += [
            Scheduled(delivery.event_id, event.cloudevents_type(), planned, payload)
            for planned in plan(event, subscriptions, ref_key=ref_key, recipient=recipient)
        ]
    await repo.store_decisions(decisions)
    return await repo.schedule(messages)


class PermanentFailure(Exception):
    """The message can never be delivered as it stands (e.g. its subscription was removed): park it now."""


class RecipientNotKnownYet(Exception):
    """A release e-mail whose grant's GrantCommitted notify has not stored (yet): the commitment may be
    on its way (another topic, a replica catching up), so it is tried again with the e-mail's backoff
    as a failed send is, and parked only once its attempts are used up."""


@dataclass
class Attempt:
    """One claimed message's send: `error` is None when it went out; `personal` holds the contact
    details it used, so that an error text can be scrubbed of them before it is logged or stored."""

    row: DueNotification
    trace: otel_context.Context
    error: Exception | None = None
    personal: list[str] = field(default_factory=list)
    #: Whom it went to and in which language, when the send learnt them after scheduling (a release
    #: e-mail planned before its grant's recipient was known: `grant:<id>`, `en`).
    told: tuple[str, Language] | None = None


def _bound(row: DueNotification) -> contextlib.AbstractContextManager[Any]:
    """The message's identity on every log line (never its address)."""
    return structlog.contextvars.bound_contextvars(
        notification_id=str(row["notification_id"]),
        application_id=row["application_id"],
        source_event_id=row["source_event_id"],
        channel=row["channel"],
        recipient_ref=row["recipient_ref"],
    )


class Dispatcher:
    """Workers that deliver due messages: each claims a batch of due rows (FOR UPDATE SKIP LOCKED), sends
    them at once over the shared SMTP sessions and HTTP client, and records the batch in one
    transaction: one statement marks every sent row, one writes every NotificationSent."""

    def __init__(
        self,
        transaction: Transaction,
        settings: NotifySettings,
        catalog: Catalog,
        mailers: Callable[[], MailSender],
        webhooks: WebhookSender | None,
        subscriptions: Subscriptions,
    ) -> None:
        self.transaction = transaction
        self.settings = settings
        self.catalog = catalog
        self.mailers = mailers
        self.webhooks = webhooks
        self.subscriptions = subscriptions
        self._idle: collections.deque[asyncio.Event] = collections.deque()  # workers waiting, first in first out
        self._pending = False  # a wake-up with no worker idle: the next one to finish a round looks again
        self.sent = 0
        self.failed = 0
        self._sends = 0  # sends done, recorded or not (the fault injection counts these)

    def wake(self) -> None:
        """Something may be due: ONE idle worker claims (not all of them: the others would open
        transactions that find nothing); with none idle, the next worker to finish its round looks
        again at once. A worker whose claim came back full wakes the next one itself."""
        if self._idle:
            self._idle.popleft().set()
        else:
            self._pending = True

    async def run(self, stopping: asyncio.Event) -> None:
        s = self.settings
        sessions = MailerPool(self.mailers, s.notify_smtp_sessions or s.notify_dispatch_workers)
        workers = [asyncio.create_task(self._worker(stopping, sessions)) for _ in range(s.notify_dispatch_workers)]
        try:
            await asyncio.gather(*workers)
        finally:
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            await sessions.close()

    async def _worker(self, stopping: asyncio.Event, mailer: MailSender) -> None:
        batch = self.settings.notify_dispatch_batch
        # A worker claims a share of the batch while the load is light, so that the messages due at
        # once spread over the workers' transactions instead of queuing behind one; the claim doubles
        # while it comes back full (a backlog: up to the whole batch, for throughput).
        share = max(1, -(-batch // self.settings.notify_dispatch_workers))
        limit = share
        while not stopping.is_set():
            # Cleared BEFORE the round: a commit that lands while the round runs sets it again, and
            # the next round starts at once instead of a poll interval later.
            self._pending = False
            try:
                handled = await self.dispatch(mailer, limit)
            except Exception as error:  # the database (a send's failure is recorded, never raised)
                log.warning("dispatch interrupted; retrying", error=type(error).__name__)
                handled = 0
                await asyncio.sleep(1)
            full = handled >= limit
            limit = next_claim(limit, handled, batch, share)
            if full:
                self.wake()  # more may be due: another worker takes part
                continue
            if self._pending:
                continue
            woken = asyncio.Event()
            self._idle.append(woken)
            try:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(woken.wait(), timeout=self.settings.notify_poll_interval_s)
            finally:
                if woken in self._idle:
                    self._idle.remove(woken)

    async def dispatch_one(self, mailer: MailSender) -> bool:
        """Deliver the next due message, if any; True if there was one (delivered or not)."""
        return await self.dispatch(mailer, 1) > 0

    async def dispatch(self, mailer: MailSender, limit: int) -> int:
        """Deliver up to `limit` due messages in one transaction; returns how many were handled."""
        async with self.transaction() as uow:
            repo: NotifyRepository = uow.repo
            rows = await repo.claim_due(limit, self.settings.notify_decision_wait_s)
            if not rows:
                return 0
            waiting = [
                r["application_id"] for r in rows if r["channel"] == "email" and r["application_id"] and _needs_decision(r)
            ]
            decisions = await repo.decisions(waiting)
            recipients = await repo.recipients([g for g in map(_released_grant, rows) if g is not None])
            # Every message of the batch at once: e-mails over the free SMTP sessions (MailerPool),
            # webhooks over the shared HTTP client's pool; no message waits for a slow receiver. The
            # sends touch no database; failures are recorded after them, on the batch's connection.
            events = StoredEvents()
            looked_up = LookedUp(decisions, recipients)
            attempts = list(await asyncio.gather(*(self._deliver(row, mailer, looked_up, events) for row in rows)))
            sent: list[Attempt] = []
            for attempt in attempts:
                if attempt.error is None:
                    sent.append(attempt)
                else:
                    await self._failed(uow, attempt)
            now = datetime.now(UTC)
            await repo.mark_sent([a.row["notification_id"] for a in sent], now)
            for attempt in sent:
                await self._publish_sent(uow, attempt, now)
        self.sent += len(sent)
        return len(rows)

    async def _deliver(self, row: DueNotification, mailer: MailSender, looked_up: LookedUp, events: StoredEvents) -> Attempt:
        """Send one claimed message; what happened (`error` None: sent), with the trace context of its
        delivery span. Writes nothing: several of a batch run at once on its one connection."""
        notification_id = str(row["notification_id"])
        ce = (row["payload"] or {}).get("ce") or {}
        parent = context_from({"traceparent": ce["traceparent"]} if ce.get("traceparent") else None)
        with span(f"notify {row['channel']}", parent, SpanKind.PRODUCER), _bound(row):
            personal: list[str] = []
            told: tuple[str, Language] | None = None
            try:
                if row["channel"] == "email":
                    told = await self._send_email(row, notification_id, personal, mailer, looked_up, events)
                else:
                    await self._send_webhook(row, notification_id, events)
            except Exception as error:
                return Attempt(row, otel_context.get_current(), error, personal)
            self._maybe_crash()
            log.info("notification sent", template=row["template"], attempts=row["attempts"] + 1)
            return Attempt(row, otel_context.get_current(), told=told)

    async def _send_email(
        self,
        row: DueNotification,
        notification_id: str,
        personal: list[str],
        mailer: MailSender,
        looked_up: LookedUp,
        events: StoredEvents,
    ) -> tuple[str, Language] | None:
        """Render in the applicant's language at send time and send. `personal` receives the contact
        details used, so that an error text can be scrubbed of them before it is logged or stored.
        Returns the recipient's reference and language when they were not known as it was scheduled
        (a release's, found from its grant's commitment), for its NotificationSent."""
        event = events.event(row)
        recipient: Recipient | None = None
        if isinstance(event, ApplicationRejected):
            if event.contact is None:
                raise PermanentFailure("rejection without a contact")
            contact = event.contact
        elif isinstance(event, GrantReleased):
            recipient = looked_up.recipients.get((event.grant_id, event.application_id))
            if recipient is None:  # waited NOTIFY_DECISION_WAIT_S for it (claim_due): retried, then parked
                raise RecipientNotKnownYet("no recipient known for this grant: notify has not consumed its GrantCommitted")
            contact = recipient.contact
        else:
            # (ignore below) every other event notify e-mails has a recipient; Event does not
            contact = event.recipient.contact  # type: ignore[attr-defined]
        personal += [contact.email, contact.name]
        decision = None
        if _needs_decision(row):
            # Claimed with its decision, or (no decision) once NOTIFY_DECISION_WAIT_S is over: then it
            # goes without explaining the criteria (claim_due).
            decision = looked_up.decisions.get(row["application_id"] or "")
        email = render_email(self.catalog, event, decision, recipient)
        if email.problems:
            # Keys and placeholder names only: what a translator must add, never a value.
            log.warning("message rendered with fallbacks", language=email.language, problems=email.problems[:20])
        # Before the send: a key that cannot make a reference fails the attempt, not its record.
        told = (recipient_ref(contact.email, self.settings.ref_key), recipient.language) if recipient else None
        await mailer.send(compose(notification_id, self.settings.mail_from, contact.email, email))
        return told

    async def _send_webhook(self, row: DueNotification, notification_id: str, events: StoredEvents) -> None:
        subscription = self.subscriptions.by_id(row["subscription_id"] or "")
        if subscription is None or self.webhooks is None:
            raise PermanentFailure(f"subscription {row['subscription_id']} is no longer configured")
        body = events.body(row)
        assert row["payload"] is not None  # StoredEvents.body refuses a row without its stored event
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
        await self.webhooks.send(subscription, notification_id, body, headers)

    async def _failed(self, uow: UnitOfWork[NotifyRepository], attempt: Attempt) -> None:
        row, error = attempt.row, attempt.error
        assert error is not None
        attempts = row["attempts"] + 1
        s = self.settings
        limit = s.notify_max_attempts if row["channel"] == "email" else s.notify_webhook_max_attempts
        dead = attempts >= limit or isinstance(error, PermanentFailure)
        text = redact(f"{type(error).__name__}: {error}", *attempt.personal)
        delay = retry_delay_s(attempts, s.notify_retry_base_s, s.notify_retry_cap_s, random.uniform(0.5, 1.0))
        await uow.repo.mark_failed_attempt(row["notification_id"], text, delay, dead)
        self.failed += 1
        with _bound(row):
            log.warning(
                "delivery failed; parked as dead letter" if dead else "delivery failed; will retry",
                attempts=attempts,
                retry_in_s=None if dead else round(delay, 2),
                error=text[:300],
            )

    async def _publish_sent(self, uow: UnitOfWork[NotifyRepository], attempt: Attempt, now: datetime) -> None:
        """The sent message's NotificationSent, in the delivery's trace (`attempt.trace`)."""
        row = attempt.row
        ref, language = attempt.told or (row["recipient_ref"], row["language"])
        sent = NotificationSent(
            notification_id=str(row["notification_id"]),
            application_id=row["application_id"],
            source_event_id=row["source_event_id"],
            source_event_type=row["source_event_type"],
            channel=row["channel"],
            recipient_ref=ref,
            template=row["template"],
            language=language,
            sent_at=now,
        )
        ce = (row["payload"] or {}).get("ce") or {}
        attributes = attributes_for(
            sent, source=uow.source, correlation_id=ce.get("correlationid"), causation_id=row["source_event_id"]
        )
        await uow.add(event_row(sent, attributes, attempt.trace))

    def _maybe_crash(self) -> None:
        self._sends += 1
        limit = self.settings.notify_fault_exit_after_sends
        if limit and self._sends >= limit:
            log.warning("fault injection: exiting after the send, before recording it")
            os._exit(70)


def next_claim(limit: int, handled: int, batch: int, share: int) -> int:
    """How many due messages a worker claims next: twice as many (up to `batch`) after a full claim,
    its `share` of the batch again after one that found fewer."""
    return min(batch, limit * 2) if handled >= limit else share


def _needs_decision(row: DueNotification) -> bool:
    """A grant e-mail explains the eligibility decision too: it waits (a while) for it (claim_due
    decides when it is due, in SQL; this says which rows to look the decision up for)."""
    return bool(row["template"].startswith("grant.") and row["application_id"])


def _released_grant(row: DueNotification) -> tuple[str, str] | None:
    """The grant and application a release e-mail tells of (its recipient is looked up for them);
    None for other rows."""
    if row["channel"] != "email" or not row["template"].startswith("release.") or not row["application_id"]:
        return None
    grant_id = ((row["payload"] or {}).get("event") or {}).get("grant_id")
    return (grant_id, row["application_id"]) if isinstance(grant_id, str) else None


@dataclass(frozen=True)
class LookedUp:
    """What a claimed batch's e-mails need beside their events: the stored decisions by application,
    the grants' recipients by (grant id, application id)."""

    decisions: dict[str, StoredDecision]
    recipients: dict[tuple[str, str], Recipient]


class StoredEvents:
    """The events of one claimed batch, each validated from its stored copy once (an e-mail and each
    webhook of one event carry the same copy), and each event's webhook body serialised once."""

    def __init__(self) -> None:
        self._events: dict[tuple[str, str], Event] = {}
        self._bodies: dict[tuple[str, str], bytes] = {}

    def event(self, row: DueNotification) -> Event:
        if row["payload"] is None:  # this row's own copy is gone: refused whatever another row holds
            return _event_of(row)
        key = (row["source_event_type"], row["source_event_id"])
        found = self._events.get(key)
        if found is None:
            found = self._events[key] = _event_of(row)
        return found

    def body(self, row: DueNotification) -> bytes:
        """The event's JSON, as a webhook carries it."""
        event = self.event(row)  # refuses a row without its stored copy
        key = (row["source_event_type"], row["source_event_id"])
        found = self._bodies.get(key)
        if found is None:
            found = self._bodies[key] = event.model_dump_json().encode()
        return found


def _event_of(row: DueNotification) -> Event:
    payload = row["payload"]
    model = EVENTS_BY_TYPE.get(row["source_event_type"])
    if payload is None or model is None:
        raise PermanentFailure("nothing stored to send (delivered before, or an unknown event type)")
    return model.model_validate(payload["event"])
