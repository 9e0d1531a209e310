"""Composition root of the notify service: settings, templates, subscriptions, SMTP, HTTP, Kafka."""

from __future__ import annotations

import asyncio
import sys
from functools import partial

import structlog

from services.notify import handlers
from services.notify.domain import MIN_REF_KEY_LENGTH, Subscriptions
from services.notify.i18n import Catalog
from services.notify.mail import Mailer
from services.notify.repository import NotifyRepository
from services.notify.settings import NotifySettings
from services.notify.webhooks import WebhookConfigError, WebhookSender, http_session, load_subscriptions
from shared.delivery import UnitOfWork
from shared.events import (
    ApplicationRejected,
    CeilingReset,
    ClusterEvaluated,
    EligibilityDecided,
    Event,
    GrantCommitted,
    GrantRefused,
    GrantReleased,
)
from shared.logging import configure_logging, secrets_of
from shared.records import Delivery
from shared.runtime import ServiceRuntime

log = structlog.get_logger("notify")

CONSUMED: tuple[type[Event], ...] = (
    ApplicationRejected,
    EligibilityDecided,
    GrantCommitted,
    GrantRefused,
    GrantReleased,
    CeilingReset,
    ClusterEvaluated,
)


def build(
    settings: NotifySettings, subscriptions: Subscriptions, webhooks: WebhookSender | None
) -> tuple[ServiceRuntime[NotifyRepository], handlers.Dispatcher]:
    runtime = ServiceRuntime("notify", settings, schema="notify", repositories=NotifyRepository)
    ref_key = settings.ref_key  # main() refuses to start without one
    dispatcher = handlers.Dispatcher(
        runtime.transaction, settings, Catalog.load(), partial(Mailer, settings), webhooks, subscriptions
    )

    async def on_events(uow: UnitOfWork[NotifyRepository], deliveries: list[Delivery[Event]]) -> None:
        scheduled = await handlers.on_events(uow, deliveries, subscriptions, ref_key=ref_key)
        log.info("events handled", events=len(deliveries), scheduled=scheduled)

    for model in CONSUMED:
        runtime.on(model, on_events)
    runtime.after_commit.append(dispatcher.wake)  # what a batch scheduled is visible once it commits
    return runtime, dispatcher


async def serve(settings: NotifySettings, subscriptions: Subscriptions) -> None:
    async with http_session(settings.notify_webhook_timeout_s) as session:
        runtime, dispatcher = build(settings, subscriptions, WebhookSender(session))
        log.info("webhook subscriptions loaded", subscriptions=[s.id for s in subscriptions.subscriptions])
        await runtime.run(dispatcher.run)


def main() -> None:
    settings = NotifySettings()
    configure_logging("notify", settings.log_format, settings.log_level, secrets=secrets_of(settings))
    key = settings.notify_recipient_ref_key
    if key is None or len(key.get_secret_value()) < MIN_REF_KEY_LENGTH:
        log.error(
            "NOTIFY_RECIPIENT_REF_KEY is unset or shorter than 32 characters; not starting",
            hint="set it from a Secret (Kubernetes: clustergrants-notify-recipient-ref); make run and the tests generate one",
        )
        sys.exit(78)  # EX_CONFIG
    try:
        subscriptions = load_subscriptions(settings.notify_webhooks_file)
    except WebhookConfigError as error:
        log.error("webhook subscriptions invalid; not starting", error=str(error))
        sys.exit(78)  # EX_CONFIG
    asyncio.run(serve(settings, subscriptions))
