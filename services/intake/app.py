"""Composition root of the intake service: Kafka subscriber, HTTP server, outbox relay."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
import uvicorn
from pydantic import ValidationError

from services.intake import handlers, repository, status
from services.intake.domain import SubmissionPolicy, UnreadableJson, load_json, text_errors
from services.intake.http import FindingAnswer, create_app
from services.intake.openapi import ApplicationStatus, FindingSubmitted, PendingReviews
from services.intake.settings import IntakeSettings
from shared.delivery import UnitOfWork
from shared.events import ApplicationSubmitted, AssessmentSubmitted, FieldError, FindingRecorded
from shared.logging import configure_logging, secrets_of
from shared.records import Delivery, Rejected
from shared.runtime import ServiceRuntime

log = structlog.get_logger("intake")


class _Server(uvicorn.Server):
    """uvicorn without its own signal handlers: the service runtime owns SIGTERM and SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def build(settings: IntakeSettings) -> tuple[ServiceRuntime, uvicorn.Server]:
    runtime = ServiceRuntime("intake", settings, schema="intake")
    policy = SubmissionPolicy(
        max_amount_minor=settings.intake_max_amount_minor, max_clock_skew=timedelta(seconds=settings.intake_max_clock_skew_s)
    )

    async def on_submitted(uow: UnitOfWork, deliveries: list[Delivery[bytes]]) -> None:
        items = [handlers.Item(handlers.Submission(d.event), str(d.position), d) for d in deliveries]
        outcomes = await handlers.receive_all(uow, items, "kafka", policy=policy)
        for delivery, outcome in zip(deliveries, outcomes, strict=True):
            log.info(
                "submission handled",
                channel="kafka",
                status=outcome.status,
                application_id=outcome.application_id,
                errors=len(outcome.errors),
                event_source=delivery.attributes.source,
            )

    async def on_unreadable(uow: UnitOfWork, rejected: list[Rejected]) -> None:
        """A record on the submitted topic that is no readable CloudEvent: the portal is told why."""
        for record in rejected:
            errors = [FieldError(loc=e["loc"], type=e["type"], message=e["message"]) for e in record.errors] or [
                FieldError(loc=[], type=record.reason, message=record.detail)
            ]
            await handlers.reject_unreadable(uow, errors, str(record.position), cause=record)

    # The submitted topic's data is validated by intake's own rules (handlers.receive), which say
    # more than the contract's JSON Schema; the runtime checks the envelope and the producer.
    runtime.on(ApplicationSubmitted, on_submitted, parse=lambda data: data, on_rejected=on_unreadable)

    async def receive_http(submission: handlers.Submission) -> handlers.Outcome:
        async with runtime.transaction() as uow:
            outcome = await handlers.receive(uow, submission, "http", policy=policy)
        log.info(
            "submission handled",
            channel="http",
            envelope=submission.envelope,
            status=outcome.status,
            application_id=outcome.application_id,
            conflicts_with=outcome.conflicts_with,
            errors=len(outcome.errors),
        )
        return outcome

    async def project(uow: UnitOfWork, deliveries: list[Delivery[Any]]) -> None:
        await status.project(uow.conn, deliveries)

    for projected in status.PROJECTED:
        runtime.on(projected, project)

    async def status_of(application_id: str) -> tuple[str | None, ApplicationStatus] | None:
        assert runtime.pool is not None
        async with runtime.pool.acquire() as conn:
            row = await repository.application_status(conn, application_id)
            if row is None:
                return None
            events = await repository.status_events(conn, application_id)
        return row["portal"], status.assemble(row, events)  # type: ignore[return-value]  # portal column: text

    async def reviews(scheme: str | None) -> PendingReviews:
        assert runtime.pool is not None
        async with runtime.pool.acquire() as conn:
            rows = await repository.pending_reviews(conn, scheme)
        return PendingReviews(pending=status.pending(rows))

    async def record_finding(application_id: str, officer: str, submitted: FindingSubmitted) -> FindingAnswer:
        """Check the finding against the latest revision intake has seen, then publish it for eligibility."""
        assert runtime.pool is not None
        async with runtime.pool.acquire() as conn:
            events = await repository.status_events(conn, application_id)
        decided = sorted((e for e in events if e["kind"] == "decided"), key=lambda e: e["revision"])
        if not decided:
            return FindingAnswer(None, 404, "not_found", "no decided application with this id")
        latest = decided[-1]
        if submitted.based_on_revision is not None and submitted.based_on_revision != latest["revision"]:
            return FindingAnswer(
                None,
                409,
                "revision_superseded",
                f"the decision is at revision {latest['revision']}, not {submitted.based_on_revision}: look again",
            )
        criteria = [c["criterion"] for c in latest["body"]["criteria"]]
        if submitted.criterion not in criteria:
            return FindingAnswer(None, 422, "unknown_criterion", f"the decision has no criterion {submitted.criterion!r}")
        try:
            finding = FindingRecorded(
                application_id=application_id,
                finding_id=f"finding-{uuid.uuid4()}",
                criterion=submitted.criterion,
                outcome=submitted.outcome,
                reason=submitted.reason,
                document_reference=submitted.document_reference,
                officer=officer,
                recorded_at=datetime.now(UTC),
                based_on_revision=latest["revision"],
            )
        except ValidationError:
            return FindingAnswer(None, 422, "finding_invalid", "criterion, officer reference or texts are not acceptable")
        async with runtime.transaction() as uow:
            await uow.publish(finding)
        log.info("finding accepted", channel="http", application_id=application_id, criterion=submitted.criterion)
        return FindingAnswer(finding.finding_id)

    async def receive_assessment(raw: bytes) -> list[FieldError]:
        try:
            document = load_json(raw)
        except UnreadableJson as unreadable:
            return [unreadable.error]
        refused = text_errors(document)
        if refused:
            return refused
        try:
            assessment = AssessmentSubmitted.model_validate_json(raw)
        except ValidationError as error:
            return [
                FieldError(loc=list(e["loc"]), type=e["type"], message=e["msg"])
                for e in error.errors(include_url=False, include_input=False)
            ]
        async with runtime.transaction() as uow:
            await uow.publish(assessment)
        log.info("assessment accepted", channel="http", application_id=assessment.application_id)
        return []

    async def ready() -> bool:
        try:
            assert runtime.pool is not None
            await runtime.pool.fetchval("SELECT 1")
            return True
        except Exception:
            return False

    tokens = [t.strip() for t in settings.intake_api_tokens.get_secret_value().split(",") if t.strip()]
    http = create_app(
        receive_http,
        receive_assessment,
        ready,
        tokens,
        settings.intake_max_body_bytes,
        lookup=status_of,
        officer_tokens=[t.strip() for t in settings.intake_officer_tokens.get_secret_value().split(",") if t.strip()],
        reviews=reviews,
        record_finding=record_finding,
        retry_after_s=settings.intake_retry_after_s,
        request_timeout_s=settings.intake_request_timeout_s,
        policy=policy,
    )
    server = _Server(
        uvicorn.Config(
            http,
            host=settings.intake_http_host,
            port=settings.intake_http_port,
            log_config=None,
            access_log=False,
            lifespan="off",
        )
    )
    return runtime, server


async def serve_http(server: uvicorn.Server, stopping: asyncio.Event) -> None:
    serving = asyncio.create_task(server.serve())
    # "service started" (the runtime's) comes before the socket is bound: say when HTTP is served.
    for _ in range(3000):  # uvicorn offers no event to wait on; at most 60 s
        if server.started or serving.done() or stopping.is_set():
            break
        await asyncio.sleep(0.02)
    if server.started:
        log.info("http listening", port=server.config.port)
    await stopping.wait()
    server.should_exit = True
    await serving


def main() -> None:
    settings = IntakeSettings()
    configure_logging("intake", settings.log_format, settings.log_level, secrets=secrets_of(settings))
    try:
        runtime, server = build(settings)
    except ValueError as error:  # a setting the HTTP intake cannot work with (e.g. a token it could never match)
        log.error("settings invalid; not starting", error=str(error))
        sys.exit(78)  # EX_CONFIG
    asyncio.run(runtime.run(lambda stopping: serve_http(server, stopping)))
