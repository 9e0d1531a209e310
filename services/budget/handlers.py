"""The budget's use case: commit an eligible grant against every pot it touches, or refuse it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Literal

from shared.delivery import UnitOfWork
from shared.events import EligibilityDecided, GrantCommitted, GrantRefused
from shared.money import Money
from services.budget import repository
from services.budget.domain import check, split


async def on_eligibility_decided(uow: UnitOfWork, decided: EligibilityDecided) -> Literal["committed", "refused", "skipped"]:
    """One transaction: pots locked in a fixed order, all draws fit or none is made."""
    grant = decided.proposed_grant
    if decided.outcome != "eligible" or grant is None:
        return "skipped"
    if await repository.already_decided(uow.conn, decided.application_id):
        return "skipped"
    now = datetime.now(UTC)
    draws = split(grant)
    pots = await repository.lock_pots(uow.conn, grant.programme, grant.currency)
    need, shortfall, unplaced = check(draws, pots)
    if unplaced is not None or shortfall is not None:
        if unplaced is not None:
            limit, key, year = f"pot:{grant.programme}/{unplaced.fund}", "budget.pot_not_configured", unplaced.budget_year
            available, requested = None, Money(amount_minor=unplaced.amount_minor, currency=grant.currency)
        else:
            assert shortfall is not None
            limit, key, year = f"pot:{shortfall.pot_id}", "budget.pot_exhausted", shortfall.budget_year
            available = Money(amount_minor=shortfall.available_minor, currency=grant.currency)
            requested = Money(amount_minor=shortfall.requested_minor, currency=grant.currency)
        await repository.record_refusal(uow.conn, decided.application_id, limit, key, now)
        await uow.publish(GrantRefused(
            application_id=decided.application_id, refused_at=now, scheme=decided.scheme, limit=limit,
            message_key=key, budget_year=year, available=available, requested=requested, recipient=decided.recipient,
        ))
        return "refused"
    grant_id = str(uuid.uuid4())
    await repository.record_commitment(uow.conn, decided.application_id, grant_id, grant, draws, pots, need, now)
    await uow.publish(GrantCommitted(
        application_id=decided.application_id, grant_id=grant_id, committed_at=now, scheme=decided.scheme,
        grant=grant, recipient=decided.recipient,
    ))
    return "committed"
