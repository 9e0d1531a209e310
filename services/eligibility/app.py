"""Composition root of the eligibility service."""

from __future__ import annotations

import asyncio

import structlog

from services.eligibility import calls, handlers
from services.eligibility.parameters import ParameterStore
from services.eligibility.settings import EligibilitySettings
from shared.delivery import Incoming
from shared.events import ApplicationReceived, AssessmentSubmitted
from shared.logging import configure_logging
from shared.runtime import ServiceRuntime
from shared.topics import Topic

log = structlog.get_logger("eligibility")


def build(settings: EligibilitySettings) -> ServiceRuntime:
    # Validated at start-up: a bad operator file stops the service with file, key and problem.
    parameters = ParameterStore.load(operator_file=settings.eligibility_operator_parameters_file)
    runtime = ServiceRuntime("eligibility", settings, schema="eligibility")

    async def on_received(incoming: Incoming) -> None:
        received = incoming.parse(ApplicationReceived)
        with structlog.contextvars.bound_contextvars(application_id=received.application_id):
            async with runtime.transaction(incoming) as uow:
                if uow.duplicate:
                    return
                outcome = await handlers.on_application_received(uow, received, parameters)
            log.info(
                "application decided" if outcome else "application already decided",
                scheme=received.application.scheme,
                outcome=outcome,
            )

    runtime.subscribe(Topic.APPLICATION_RECEIVED, on_received)

    async def on_assessment(incoming: Incoming) -> None:
        assessment = incoming.parse(AssessmentSubmitted)
        with structlog.contextvars.bound_contextvars(application_id=assessment.application_id):
            async with runtime.transaction(incoming) as uow:
                if uow.duplicate:
                    return
                stored = await calls.record_assessment(uow.conn, assessment)
            log.info("assessment recorded" if stored else "older assessment ignored", call_id=assessment.call_id)

    runtime.subscribe(Topic.ASSESSMENT_SUBMITTED, on_assessment)
    return runtime


def main() -> None:
    settings = EligibilitySettings()
    configure_logging("eligibility", settings.log_format, settings.log_level)
    asyncio.run(build(settings).run())
