"""The eligibility rules engine: pure, no I/O, no clock.

`evaluate(application, parameters)` decides one application against its scheme: every criterion
of the scheme is evaluated (none is skipped after a failure) on the parameters in force on the
reference date, which is the day of `application.submitted_at` in the scheme's time zone.

Outcome: any criterion failed -> "ineligible"; else any not_decidable -> "needs_review" (a case
handler decides); else "eligible", with the proposed grant the rules allow. The beneficiary is the
applicant's register identity (`registers`); every scheme that pays money has a `beneficiary`
criterion, so an eligible grant always names it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Literal

from services.eligibility.parameters import ParameterStore
from services.eligibility.registers import Identified
from services.eligibility.schemes import SCHEMES
from services.eligibility.schemes.common import beneficiary_of
from shared.events import Application, CriterionResult, ProposedGrant

DecisionOutcome = Literal["eligible", "ineligible", "needs_review"]


@dataclass(frozen=True, slots=True)
class Decision:
    outcome: DecisionOutcome
    criteria: list[CriterionResult]
    proposed_grant: ProposedGrant | None
    parameter_version: str
    reference_date: date
    time_zone: str
    beneficiary_id: str | None = None
    """The applicant's register identity (org-id.guide), or None without a valid number."""

    def criterion(self, criterion_id: str) -> CriterionResult:
        """The result of one criterion, by its stable id."""
        for result in self.criteria:
            if result.criterion == criterion_id:
                return result
        raise KeyError(criterion_id)


def outcome_of(criteria: list[CriterionResult]) -> DecisionOutcome:
    outcomes = {c.outcome for c in criteria}
    if "failed" in outcomes:
        return "ineligible"
    if "not_decidable" in outcomes:
        return "needs_review"
    return "eligible"


def evaluate(application: Application, parameters: ParameterStore) -> Decision:
    """Decide `application` against its scheme with the parameters in force on its reference date."""
    rules = SCHEMES[application.scheme]
    scheme = parameters.scheme(application.scheme)
    reference_date = application.submitted_at.astimezone(scheme.zone).date()
    in_force = parameters.in_force(application.scheme, reference_date)
    criteria = [criterion(application, in_force) for criterion in rules.criteria]
    outcome = outcome_of(criteria)
    identity = beneficiary_of(application)
    beneficiary_id = identity.org_id if isinstance(identity, Identified) else None
    grant = rules.propose(application, in_force) if outcome == "eligible" else None
    if grant is not None and beneficiary_id is not None:
        grant = grant.model_copy(update={"beneficiary_id": beneficiary_id})
    return Decision(
        outcome=outcome,
        criteria=criteria,
        proposed_grant=grant,
        parameter_version=in_force.version,
        reference_date=reference_date,
        time_zone=scheme.time_zone,
        beneficiary_id=beneficiary_id,
    )
