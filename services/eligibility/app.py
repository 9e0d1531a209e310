"""Composition root of the eligibility service."""

from __future__ import annotations

import asyncio

import structlog

from services.eligibility import calls, handlers
from services.eligibility.parameters import ParameterStore
from services.eligibility.repository import EligibilityRepository
from services.eligibility.settings import EligibilitySettings
from shared.delivery import UnitOfWork
from shared.events import ApplicationReceived, AssessmentSubmitted, FindingRecorded
from shared.logging import configure_logging
from shared.records import Delivery
from shared.runtime import ServiceRuntime
from shared.schemes import CASE_EVENTS_FAMILY, family_group, family_of

log = structlog.get_logger("eligibility")


def decides(families: tuple[str, ...], scheme: str) -> bool:
    """Whether an instance limited to `families` (none: all) decides an application of `scheme`."""
    return not families or family_of(scheme) in families


def takes_case_events(families: tuple[str, ...]) -> bool:
    """Findings and assessments (every scheme's): the all-families instance, or CASE_EVENTS_FAMILY's."""
    return not families or CASE_EVENTS_FAMILY in families


def build(settings: EligibilitySettings) -> ServiceRuntime[EligibilityRepository]:
    # Validated at start-up: a bad operator file stops the service with file, key and problem.
    parameters = ParameterStore.load(operator_file=settings.eligibility_operator_parameters_file)
    families = settings.families
    runtime = ServiceRuntime(
        "eligibility",
        settings,
        schema="eligibility",
        repositories=EligibilityRepository,
        group=family_group("eligibility", families),
    )

    async def on_received(uow: UnitOfWork, deliveries: list[Delivery[ApplicationReceived]]) -> None:
        # Another family's group reads the same records and decides the others.
        mine = [d for d in deliveries if decides(families, d.event.application.scheme)]
        outcomes = await handlers.on_applications_received(uow, [(d.event, d) for d in mine], parameters)
        for delivery, outcome in zip(mine, outcomes, strict=True):
            log.info(
                "application decided" if outcome else "application already decided",
                application_id=delivery.event.application_id,
                scheme=delivery.event.application.scheme,
                outcome=outcome,
            )
        if len(mine) < len(deliveries):
            log.debug("applications of other scheme families skipped", skipped=len(deliveries) - len(mine), families=families)

    runtime.on(ApplicationReceived, on_received)
    if not takes_case_events(families):
        log.info("scheme families limited", families=families, group=runtime.group)
        return runtime

    async def on_assessment(uow: UnitOfWork, deliveries: list[Delivery[AssessmentSubmitted]]) -> None:
        for delivery in deliveries:
            assessment = delivery.event
            with structlog.contextvars.bound_contextvars(application_id=assessment.application_id):
                stored = await calls.record_assessment(uow.conn, assessment)
                log.info("assessment recorded" if stored else "older assessment ignored", call_id=assessment.call_id)

    runtime.on(AssessmentSubmitted, on_assessment)

    async def on_finding(uow: UnitOfWork, deliveries: list[Delivery[FindingRecorded]]) -> None:
        for delivery in deliveries:
            finding = delivery.event
            with structlog.contextvars.bound_contextvars(application_id=finding.application_id):
                revised = await handlers.on_finding_recorded(uow, finding, parameters, cause=delivery)
                log.info(
                    "finding applied" if revised else "finding seen before",
                    finding_id=finding.finding_id,
                    criterion=finding.criterion,
                    revision=revised.decision.revision if revised else None,
                    outcome=revised.decision.outcome if revised else None,
                )

    runtime.on(FindingRecorded, on_finding)
    return runtime


def main() -> None:
    settings = EligibilitySettings()
    configure_logging("eligibility", settings.log_format, settings.log_level)
    asyncio.run(build(settings).run())
