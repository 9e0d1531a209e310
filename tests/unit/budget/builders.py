"""Builders of budget test inputs: proposed grants, eligibility decisions, configurations."""

from __future__ import annotations

import secrets
from datetime import UTC, date, datetime
from typing import Any

from services.budget.config import DOCUMENT_FILE, BudgetFile, merge, read_file
from services.budget.domain import BudgetConfig
from shared.events import (
    Contact,
    CriterionResult,
    EligibilityDecided,
    FundShare,
    ProposedGrant,
    Recipient,
    ScheduledAmount,
)
from shared.money import Money


def grant(
    programme: str,
    schedule: dict[int, int],
    *,
    currency: str = "EUR",
    instrument: str = "coordination-subsidy",
    shares: list[tuple[str, int, int]] | None = None,
    conditional: bool = False,
) -> ProposedGrant:
    return ProposedGrant(
        programme=programme,
        instrument=instrument,
        currency=currency,  # type: ignore[arg-type]  # pydantic checks the currency
        schedule=[
            # (ignore below) pydantic checks the currency
            ScheduledAmount(budget_year=y, amount=Money(amount_minor=a, currency=currency))  # type: ignore[arg-type]
            for y, a in sorted(schedule.items())
        ],
        fund_shares=[FundShare(fund=f, numerator=n, denominator=d) for f, n, d in (shares or [("agency", 1, 1)])],
        conditional=conditional,
    )


def decided(
    proposed: ProposedGrant | None,
    *,
    scheme: str = "vlaio.spearhead-cluster",
    application_id: str | None = None,
    outcome: str = "eligible",
    beneficiary: str | None = None,
    revision: int = 1,
) -> EligibilityDecided:
    """A decision; its grant's beneficiary is `beneficiary`, or one of its own (a fresh register id)."""
    if proposed is not None and proposed.beneficiary_id is None:
        proposed = proposed.model_copy(update={"beneficiary_id": beneficiary or f"BE-BCE_KBO-T{secrets.token_hex(6)}"})
    return EligibilityDecided(
        revision=revision,
        beneficiary_id=proposed.beneficiary_id if proposed is not None else beneficiary,
        application_id=application_id or f"T-{secrets.token_hex(6)}",
        scheme=scheme,  # type: ignore[arg-type]  # pydantic checks the scheme
        decided_at=datetime(2019, 10, 2, 9, 0, tzinfo=UTC),
        reference_date=date(2019, 10, 1),
        time_zone="Europe/Brussels",
        outcome=outcome,  # type: ignore[arg-type]  # pydantic checks the outcome
        parameter_version="test",
        criteria=[CriterionResult(criterion="test", outcome="passed", message_key="test.passed")],
        proposed_grant=proposed,
        recipient=Recipient(
            language="en", contact=Contact(name="Test Person", email="t@example.org"), organisation_name="Test Org"
        ),
    )


def config(operator: dict[str, Any] | None = None) -> BudgetConfig:
    """The document figures plus an operator file given as a mapping."""
    return merge(read_file(DOCUMENT_FILE), BudgetFile.model_validate(operator) if operator is not None else None)


def programme_with_pots(
    programme: str,
    pots: dict[str, int],
    *,
    currency: str = "EUR",
    counts: list[dict[str, Any]] | None = None,
    yearly_maximum_required: bool = False,
    ceilings: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """An operator file for one test programme: `pots` maps fund -> total in minor units."""
    source = "test figure (not a document figure)"
    return {
        "programmes": [
            {"programme": programme, "currency": currency, "source": source, "yearly_maximum_required": yearly_maximum_required}
        ],
        "pots": [
            {
                "pot_id": f"{programme}/{fund}",
                "programme": programme,
                "fund": fund,
                "currency": currency,
                "total_minor": total,
                "source": source,
            }
            for fund, total in pots.items()
        ],
        "counts": [{"source": source, **c} for c in counts or []],
        "ceilings": [{"source": source, **c} for c in ceilings or []],
    }
