"""Composition root of the notify service."""

from __future__ import annotations

import asyncio

import structlog

from shared.delivery import Incoming
from shared.events import ApplicationRejected, EligibilityDecided, Event, GrantCommitted, GrantRefused
from shared.logging import configure_logging
from shared.runtime import ServiceRuntime
from shared.topics import Topic
from services.notify import handlers
from services.notify.mail import Mailer
from services.notify.settings import NotifySettings

log = structlog.get_logger("notify")

CONSUMED: dict[Topic, type[Event]] = {
    Topic.APPLICATION_REJECTED: ApplicationRejected,
    Topic.ELIGIBILITY_DECIDED: EligibilityDecided,
    Topic.GRANT_COMMITTED: GrantCommitted,
    Topic.GRANT_REFUSED: GrantRefused,
}


def build(settings: NotifySettings) -> tuple[ServiceRuntime, handlers.Dispatcher]:
    runtime = ServiceRuntime("notify", settings, schema="notify")
    dispatcher = handlers.Dispatcher(runtime.transaction, Mailer(settings), settings.notify_max_attempts)

    def subscribe(topic: Topic, model: type[Event]) -> None:
        async def on_event(incoming: Incoming) -> None:
            event = incoming.parse(model)
            with structlog.contextvars.bound_contextvars(application_id=getattr(event, "application_id", None)):
                async with runtime.transaction(incoming) as uow:
                    if uow.duplicate:
                        return
                    scheduled = await handlers.on_event(uow, event, incoming.event_id)
                if scheduled:
                    dispatcher.wake()
                log.info("event handled", event_type=model.cloudevents_type(), scheduled=scheduled)

        runtime.subscribe(topic, on_event)

    for topic, model in CONSUMED.items():
        subscribe(topic, model)
    return runtime, dispatcher


def main() -> None:
    settings = NotifySettings()
    configure_logging("notify", settings.log_format, settings.log_level)
    runtime, dispatcher = build(settings)
    asyncio.run(runtime.run(dispatcher.run))
