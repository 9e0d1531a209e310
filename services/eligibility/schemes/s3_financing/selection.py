"""S3 step 2 against the project's own step-1 result, not the portal's claim. Pure, no I/O.

Step 2 is open only to "de utvalda klusterorganisationerna" (seed 003): those selected for the
platform in step 1. The project ran step 1 itself (`calls close-call s3.platform ...`, CallClosed), so
its own result decides; an application's `selected_for: ["s3-platform"]` is a claim, which alone is
never enough. The eligibility service gathers `OwnSelection` (the beneficiaries its closed s3.platform
calls selected, and those a case handler recorded as selected outside the project with
`calls record-selection`) and this module's verdict replaces the rules' `selected_for_platform`:

* the applicant's register identity is in the own selection or recorded outside: passed;
* no s3.platform call has been closed here and nothing is recorded: not decidable (a case handler);
* otherwise: failed, saying whether the portal claimed a selection the project's result does not hold.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from services.eligibility.schemes.common import text
from shared.events import Application, CriterionResult

CRITERION = "selected_for_platform"
STEP_1 = "s3.platform"
CLAIM = "s3-platform"


@dataclass(frozen=True, slots=True)
class OwnSelection:
    calls_closed: tuple[str, ...] = ()
    """The s3.platform calls this project closed."""
    selected: frozenset[str] = field(default_factory=frozenset)
    """Register identities (OrgId) of the beneficiaries those calls selected."""
    outside: frozenset[str] = field(default_factory=frozenset)
    """Register identities a case handler recorded as selected outside the project (audited)."""


def verdict(application: Application, beneficiary_id: str | None, own: OwnSelection) -> CriterionResult:
    claimed = CLAIM in (application.selected_for or [])
    figures = {"selection": text(CLAIM)}

    if beneficiary_id is not None and beneficiary_id in own.selected:
        return CriterionResult(
            criterion=CRITERION, outcome="passed", message_key="s3.financing.selected_by_project", figures=figures
        )
    if beneficiary_id is not None and beneficiary_id in own.outside:
        return CriterionResult(
            criterion=CRITERION, outcome="passed", message_key="s3.financing.selected_outside_project", figures=figures
        )
    if beneficiary_id is None:
        return CriterionResult(
            criterion=CRITERION, outcome="not_decidable", message_key="s3.financing.selection_unverifiable", figures=figures
        )
    if not own.calls_closed:
        return CriterionResult(
            criterion=CRITERION, outcome="not_decidable", message_key="s3.financing.own_selection_unknown", figures=figures
        )
    if claimed:
        return CriterionResult(
            criterion=CRITERION, outcome="failed", message_key="s3.financing.claim_not_in_own_selection", figures=figures
        )
    return CriterionResult(criterion=CRITERION, outcome="failed", message_key="s3.financing.not_selected", figures=figures)
