"""Revisions of a decision: a case handler's finding, a re-decision under new parameters. Pure, no I/O.

A revision is a whole new `EligibilityDecided`: revision n+1, `supersedes` the event id of revision n,
`decided_by` who made it. Every criterion keeps its origin (`decided_by` per criterion): a finding
replaces the one criterion it is about; a re-decision re-runs the rules on every criterion a person
has not decided, and keeps what a person decided. The outcome follows from the criteria as for a
first decision (`domain.outcome_of`); an eligible revision carries the grant the rules propose with
the parameters in force on the application's reference date.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from services.eligibility.domain import evaluate, outcome_of
from services.eligibility.parameters import OperatorParameterUnset, ParameterNotInForce, ParameterStore
from services.eligibility.schemes import SCHEMES
from services.eligibility.schemes.common import Undecidable, text
from shared.events import Application, CriterionResult, EligibilityDecided, FindingRecorded, ProposedGrant

GRANT_CRITERION = "grant_proposal"
"""Added to an eligible-by-criteria revision whose grant the rules cannot compute (a parameter unset)."""


class FindingRefused(ValueError):
    """A finding that cannot apply to the decision it meets; the message says why."""


def officer_ref(officer: str) -> str:
    return f"officer:{officer}"


def finding_result(finding: FindingRecorded) -> CriterionResult:
    return CriterionResult(
        criterion=finding.criterion,
        outcome=finding.outcome,
        message_key=f"case.finding.{finding.outcome}",
        figures={"reason": text(finding.reason), "document_reference": text(finding.document_reference)},
        decided_by=officer_ref(finding.officer),
    )


def check_finding(previous: EligibilityDecided, finding: FindingRecorded) -> None:
    """Refuse what a case handler cannot decide this way (the intake endpoint and the CLI ask the same)."""
    if finding.application_id != previous.application_id:
        raise FindingRefused(f"finding for {finding.application_id} met the decision of {previous.application_id}")
    known = [c.criterion for c in previous.criteria if c.criterion != GRANT_CRITERION]
    if finding.criterion not in known:
        raise FindingRefused(f"{finding.application_id} has no criterion {finding.criterion!r}; its criteria: {', '.join(known)}")
    if finding.criterion == "beneficiary" and finding.outcome == "passed" and previous.beneficiary_id is None:
        raise FindingRefused(
            "the beneficiary cannot be passed by a finding: the application names no valid register number, and a "
            "grant is kept under the beneficiary's register identity (the portal resubmits with the number)"
        )


def propose(application: Application, parameters: ParameterStore, beneficiary_id: str | None) -> ProposedGrant | None:
    rules = SCHEMES[application.scheme]
    scheme = parameters.scheme(application.scheme)
    reference_date = application.submitted_at.astimezone(scheme.zone).date()
    grant = rules.propose(application, parameters.in_force(application.scheme, reference_date))
    if grant is not None and beneficiary_id is not None:
        grant = grant.model_copy(update={"beneficiary_id": beneficiary_id})
    return grant


def _decided(
    previous: EligibilityDecided,
    application: Application,
    parameters: ParameterStore,
    criteria: list[CriterionResult],
    *,
    parameter_version: str,
    decided_by: str,
    supersedes: str | None,
    now: datetime,
) -> EligibilityDecided:
    criteria = [c for c in criteria if c.criterion != GRANT_CRITERION]
    outcome = outcome_of(criteria)
    grant = None
    if outcome == "eligible":
        try:
            grant = propose(application, parameters, previous.beneficiary_id)
        except (Undecidable, OperatorParameterUnset, ParameterNotInForce) as error:
            key = error.message_key if isinstance(error, Undecidable) else "case.grant.parameter_unset"
            criteria.append(CriterionResult(criterion=GRANT_CRITERION, outcome="not_decidable", message_key=key))
            outcome = "needs_review"
    return previous.model_copy(
        update={
            "decided_at": now,
            "outcome": outcome,
            "criteria": criteria,
            "proposed_grant": grant,
            "parameter_version": parameter_version,
            "revision": previous.revision + 1,
            "supersedes": supersedes,
            "decided_by": decided_by,
        }
    )


def with_finding(
    previous: EligibilityDecided,
    supersedes: str | None,
    application: Application,
    finding: FindingRecorded,
    parameters: ParameterStore,
    now: datetime,
) -> EligibilityDecided:
    """The next revision: `finding` replaces its criterion, the others are kept as they were."""
    check_finding(previous, finding)
    replaced = [finding_result(finding) if c.criterion == finding.criterion else c for c in previous.criteria]
    return _decided(
        previous,
        application,
        parameters,
        replaced,
        parameter_version=previous.parameter_version,
        decided_by=officer_ref(finding.officer),
        supersedes=supersedes,
        now=now,
    )


def redecided(
    previous: EligibilityDecided,
    supersedes: str | None,
    application: Application,
    parameters: ParameterStore,
    now: datetime,
    overrides: Mapping[str, CriterionResult] | None = None,
) -> EligibilityDecided:
    """What the rules decide now (parameters in force today for the reference date), a person's
    findings kept, and the project's own results (`overrides`, e.g. S3's step-1 selection) over the
    rules' reading of the application's claims. The caller publishes it only if the outcome differs from `previous`'s."""
    fresh = evaluate(application, parameters)
    by_person = {c.criterion: c for c in previous.criteria if c.decided_by != "rules" and c.criterion != GRANT_CRITERION}
    own = overrides or {}
    criteria = [by_person.get(c.criterion, own.get(c.criterion, c)) for c in fresh.criteria]
    return _decided(
        previous,
        application,
        parameters,
        criteria,
        parameter_version=fresh.parameter_version,
        decided_by="rules",
        supersedes=supersedes,
        now=now,
    )
