"""Eligibility's use cases: decide a received application, say why criterion by criterion, and
revise the decision when a case handler records a finding or the parameters in force change."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from services.eligibility import revisions
from services.eligibility.domain import evaluate, outcome_of
from services.eligibility.parameters import ParameterStore
from services.eligibility.registers import Identified
from services.eligibility.repository import EligibilityRepository
from services.eligibility.schemes.common import beneficiary_of
from services.eligibility.schemes.s3_financing import selection as s3_selection
from shared.delivery import Cause, PoisonMessage, UnitOfWork
from shared.events import Application, ApplicationReceived, CriterionResult, EligibilityDecided, FindingRecorded, Recipient


def repo_of(uow: UnitOfWork[Any]) -> EligibilityRepository:
    """The unit of work's repositories (an operator command's unit of work binds them here)."""
    if uow.repo is None:
        uow.repo = EligibilityRepository(uow.conn)
    repo = uow.repo
    assert isinstance(repo, EligibilityRepository)
    return repo


async def own_results(repo: EligibilityRepository, application: Application) -> dict[str, CriterionResult]:
    """What the project itself knows that overrides the application's claims (S3 step 2's selection)."""
    if application.scheme != "s3.financing":
        return {}
    return _own_results(await repo.own_selection(s3_selection.STEP_1), application)


def _own_results(own: s3_selection.OwnSelection, application: Application) -> dict[str, CriterionResult]:
    identity = beneficiary_of(application)
    beneficiary_id = identity.org_id if isinstance(identity, Identified) else None
    return {s3_selection.CRITERION: s3_selection.verdict(application, beneficiary_id, own)}


def decide(
    received: ApplicationReceived,
    parameters: ParameterStore,
    now: datetime | None = None,
    overrides: Mapping[str, CriterionResult] | None = None,
) -> EligibilityDecided:
    """The first decision; `overrides` are the project's own results that replace a criterion's
    reading of the application (S3 step 2: the project's step-1 selection over the portal's claim)."""
    application = received.application
    decision = evaluate(application, parameters)
    criteria = [(overrides or {}).get(c.criterion, c) for c in decision.criteria]
    outcome = outcome_of(criteria)
    grant = decision.proposed_grant if decision.outcome == "eligible" else None
    if outcome == "eligible" and grant is None:
        grant = revisions.propose(application, parameters, decision.beneficiary_id)
    return EligibilityDecided(
        application_id=application.application_id,
        scheme=application.scheme,
        decided_at=now or datetime.now(UTC),
        reference_date=decision.reference_date,
        time_zone=decision.time_zone,
        outcome=outcome,
        parameter_version=decision.parameter_version,
        criteria=criteria,
        proposed_grant=grant if outcome == "eligible" else None,
        beneficiary_id=decision.beneficiary_id,
        recipient=Recipient(
            language=application.language,
            contact=application.contact,
            organisation_name=application.applicant.organisation_name,
        ),
    )


async def on_application_received(
    uow: UnitOfWork, received: ApplicationReceived, parameters: ParameterStore, *, cause: Cause = None
) -> str | None:
    """Store and decide the application; returns the outcome, or None if it was decided before."""
    return (await on_applications_received(uow, [(received, cause)], parameters))[0]


async def on_applications_received(
    uow: UnitOfWork, batch: Sequence[tuple[ApplicationReceived, Cause]], parameters: ParameterStore
) -> list[str | None]:
    """Store and decide a consumed batch of applications with one statement for the applications and
    one for the decisions (and their first revision rows); per application, in order, its outcome, or
    None if it was decided before (a redelivery, or the same application earlier in the batch).

    The S3 step-1 selection the step-2 applications are checked against is read once for the batch:
    the batch writes no call results, so it is the same for every one of them."""
    repo = repo_of(uow)
    await repo.store_applications([received.application for received, _ in batch])
    own: s3_selection.OwnSelection | None = None
    decided: list[tuple[EligibilityDecided, str, Cause]] = []
    first: dict[str, tuple[EligibilityDecided, str]] = {}
    for received, cause in batch:
        overrides: dict[str, CriterionResult] = {}
        if received.application.scheme == "s3.financing":
            own = own if own is not None else await repo.own_selection(s3_selection.STEP_1)
            overrides = _own_results(own, received.application)
        decision = decide(received, parameters, overrides=overrides)
        event_id = str(uuid.uuid4())
        decided.append((decision, event_id, cause))
        first.setdefault(decision.application_id, (decision, event_id))
    stored = await repo.store_decisions(list(first.values()))
    outcomes: list[str | None] = []
    for decision, event_id, cause in decided:
        if (decision.application_id, event_id) in stored:
            await uow.publish(decision, cause=cause, event_id=event_id)
            outcomes.append(decision.outcome)
        else:
            outcomes.append(None)
    return outcomes


@dataclass(frozen=True, slots=True)
class Revised:
    decision: EligibilityDecided
    previous: EligibilityDecided
    published: bool


async def on_finding_recorded(
    uow: UnitOfWork, finding: FindingRecorded, parameters: ParameterStore, *, cause: Cause = None
) -> Revised | None:
    """Apply a case handler's finding: the decision's next revision, published. None: seen before.

    A finding that cannot apply (no such application or criterion, a beneficiary without a register
    number) is refused with its reason: parked when it came by Kafka, an error for the CLI."""
    repo = repo_of(uow)
    if await repo.finding_known(finding.finding_id):
        return None
    latest = await repo.latest(finding.application_id, for_update=True)
    application = await repo.application(finding.application_id)
    if latest is None or application is None:
        raise PoisonMessage(f"finding {finding.finding_id}: application {finding.application_id} has not been decided")
    try:
        decided = revisions.with_finding(latest.decision, latest.event_id, application, finding, parameters, datetime.now(UTC))
    except revisions.FindingRefused as error:
        raise PoisonMessage(f"finding {finding.finding_id} refused: {error}") from None
    event_id = str(uuid.uuid4())
    await repo.store_revision(decided, event_id)
    await repo.store_finding(finding, decided.revision)
    await uow.publish(decided, cause=cause, event_id=event_id)
    return Revised(decided, latest.decision, True)


async def redecide(uow: UnitOfWork, application_id: str, parameters: ParameterStore) -> Revised | None:
    """Re-run the rules on a pending application with the parameters now in force; publish the next
    revision only when the outcome changes. None: no such decided application."""
    repo = repo_of(uow)
    latest = await repo.latest(application_id, for_update=True)
    application = await repo.application(application_id)
    if latest is None or application is None:
        return None
    overrides = await own_results(repo, application)
    decided = revisions.redecided(latest.decision, latest.event_id, application, parameters, datetime.now(UTC), overrides)
    if decided.outcome == latest.decision.outcome:
        return Revised(decided, latest.decision, False)
    event_id = str(uuid.uuid4())
    await repo.store_revision(decided, event_id)
    await uow.publish(decided, event_id=event_id)
    return Revised(decided, latest.decision, True)
