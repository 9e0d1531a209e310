"""What-if, the pure part: what would change for each application under proposed parameters.

Both stores are evaluated with the same pure `evaluate`; nothing is published or stored.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from services.eligibility.domain import Decision, DecisionOutcome, evaluate
from services.eligibility.parameters import ParameterStore
from shared.events import Application
from shared.money import Money


@dataclass(frozen=True, slots=True)
class CriterionChange:
    criterion: str
    before: str
    after: str
    before_key: str
    after_key: str


@dataclass(frozen=True, slots=True)
class WhatIf:
    application_id: str
    scheme: str
    outcome_before: DecisionOutcome
    outcome_after: DecisionOutcome
    total_before: Money | None
    total_after: Money | None
    schedule_before: tuple[tuple[int, int], ...]
    schedule_after: tuple[tuple[int, int], ...]
    criteria_changed: tuple[CriterionChange, ...]
    version_before: str
    version_after: str

    @property
    def changed(self) -> bool:
        """Outcome, amounts or any criterion's outcome or explanation differ."""
        return (
            self.outcome_before != self.outcome_after
            or self.schedule_before != self.schedule_after
            or bool(self.criteria_changed)
        )


def _schedule(decision: Decision) -> tuple[tuple[int, int], ...]:
    grant = decision.proposed_grant
    return () if grant is None else tuple((s.budget_year, s.amount.amount_minor) for s in grant.schedule)


def compare(application: Application, current: ParameterStore, proposed: ParameterStore) -> WhatIf:
    before, after = evaluate(application, current), evaluate(application, proposed)
    after_by_id = {c.criterion: c for c in after.criteria}
    changes = tuple(
        CriterionChange(c.criterion, c.outcome, a.outcome, c.message_key, a.message_key)
        for c in before.criteria
        if (a := after_by_id[c.criterion]).outcome != c.outcome or a.message_key != c.message_key
    )
    return WhatIf(
        application_id=application.application_id,
        scheme=application.scheme,
        outcome_before=before.outcome,
        outcome_after=after.outcome,
        total_before=before.proposed_grant.total if before.proposed_grant else None,
        total_after=after.proposed_grant.total if after.proposed_grant else None,
        schedule_before=_schedule(before),
        schedule_after=_schedule(after),
        criteria_changed=changes,
        version_before=before.parameter_version,
        version_after=after.parameter_version,
    )


def what_if(applications: Iterable[Application], current: ParameterStore, proposed: ParameterStore) -> list[WhatIf]:
    """One `WhatIf` per application, in input order (use `.changed` to keep only the differences)."""
    return [compare(application, current, proposed) for application in applications]
