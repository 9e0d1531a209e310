"""The budget's use cases, each in the caller's unit of work (one PostgreSQL transaction with the
inbox claim and the outbox): commit an eligible grant or refuse it, open a budget year, release a
grant's future slices, and ask for a year to be opened."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import structlog

from services.budget import repository
from services.budget.domain import (
    COUNT,
    BudgetConfig,
    Placement,
    Refusal,
    ReleaseError,
    check_ceilings,
    check_fits,
    check_shape,
    check_year_opening,
    check_years,
    decide_reset,
    initial_state,
    place,
    plan_release,
)
from shared.delivery import Cause, PoisonMessage, UnitOfWork
from shared.events import (
    CeilingReset,
    EligibilityDecided,
    GrantCommitted,
    GrantRefused,
    GrantReleased,
    ReleasedAmount,
    ScheduledAmount,
)
from shared.money import Money, is_currency

log = structlog.get_logger("budget")

RESET_NAMESPACE = uuid.UUID("3f0c2a56-4a8e-4b1e-9a57-0c7c2b1d5e10")


def reset_id(programme: str, budget_year: int) -> str:
    return f"{programme}/{budget_year}"


def reset_event_id(programme: str, budget_year: int) -> str:
    """The same CloudEvents id for every request to open the same year: consumers drop copies."""
    return str(uuid.uuid5(RESET_NAMESPACE, reset_id(programme, budget_year)))


def _money(amount: int | None, unit: str | None) -> Money | None:
    if amount is None or not is_currency(unit):
        return None
    return Money(amount_minor=amount, currency=unit)


def _count(amount: int | None, unit: str | None) -> int | None:
    return amount if unit == COUNT else None


# --- commit or refuse ----------------------------------------------------------------------------------


async def on_eligibility_decided(
    uow: UnitOfWork,
    decided: EligibilityDecided,
    config: BudgetConfig,
    *,
    cause: str,
    delivery: Cause = None,
    now: datetime | None = None,
) -> Literal["committed", "refused", "skipped"]:
    """Commit the proposed grant against every pot and limit it touches in this one transaction, or
    refuse it naming the limit, what was left and what was asked. Locks follow the fixed order."""
    grant = decided.proposed_grant
    if decided.outcome != "eligible" or grant is None:
        return "skipped"
    now = now or datetime.now(UTC)
    conn = uow.conn
    await repository.lock_application(conn, decided.application_id)
    if await repository.already_decided(conn, decided.application_id):
        return "skipped"

    refusal = check_shape(grant, config) or check_ceilings(decided.scheme, grant, config.ceilings)
    placements: list[Placement] = []
    if refusal is None:
        placed = place(grant, config)
        if isinstance(placed, Refusal):
            refusal = placed
        else:
            placements = placed
    state = None
    if refusal is None:
        state = await repository.lock_programme(conn, grant.programme, exclusive=False)
        if state is None:
            refusal = Refusal(f"programme:{grant.programme}", "budget.programme_not_configured")
        else:
            refusal = check_years(grant, state.open_year, state.yearly_maximum)
    if refusal is None:
        balances = await repository.lock_pots(conn, (p.pot_id for p in placements))
        missing = sorted({p.pot_id for p in placements} - set(balances))
        # A pot configured but not (yet) loaded into this ledger refuses as not configured.
        refusal = Refusal(f"pot:{missing[0]}", "budget.pot_not_configured") if missing else check_fits(placements, balances)
    if refusal is not None:
        await repository.record_refusal(
            conn,
            decided.application_id,
            refusal.limit,
            refusal.message_key,
            refusal.budget_year,
            refusal.available,
            refusal.requested,
            refusal.unit,
            now,
        )
        await uow.publish(
            GrantRefused(
                application_id=decided.application_id,
                refused_at=now,
                scheme=decided.scheme,
                limit=refusal.limit,
                message_key=refusal.message_key,
                budget_year=refusal.budget_year,
                available=_money(refusal.available, refusal.unit),
                requested=_money(refusal.requested, refusal.unit),
                available_count=_count(refusal.available, refusal.unit),
                requested_count=_count(refusal.requested, refusal.unit),
                recipient=decided.recipient,
            ),
            cause=delivery,
        )
        log.info(
            "grant refused",
            limit=refusal.limit,
            message_key=refusal.message_key,
            budget_year=refusal.budget_year,
            available=refusal.available,
            requested=refusal.requested,
            unit=refusal.unit,
        )
        return "refused"

    assert state is not None
    grant_id = str(uuid.uuid4())
    new = repository.NewGrant(
        grant_id=grant_id,
        application_id=decided.application_id,
        scheme=decided.scheme,
        programme=grant.programme,
        instrument=grant.instrument,
        currency=grant.currency,
        conditional=grant.conditional,
        fund_shares=[(s.fund, s.numerator, s.denominator) for s in grant.fund_shares],
        grant_json=grant.model_dump(mode="json"),
    )
    states = [initial_state(p.budget_year, state.open_year) for p in placements]
    await repository.record_commitment(conn, new, placements, states, cause=cause, at=now)
    await uow.publish(
        GrantCommitted(
            application_id=decided.application_id,
            grant_id=grant_id,
            committed_at=now,
            scheme=decided.scheme,
            grant=grant,
            recipient=decided.recipient,
        ),
        cause=delivery,
    )
    log.info(
        "grant committed",
        grant_id=grant_id,
        programme=grant.programme,
        instrument=grant.instrument,
        currency=grant.currency,
        amount_minor=grant.total.amount_minor,
        pots=sorted({p.pot_id for p in placements}),
    )
    return "committed"


# --- the yearly ceiling reset ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ResetOutcome:
    decision: str
    opened: int = 0
    capped: int = 0
    capped_minor: int = 0
    closed: int = 0


async def on_ceiling_reset(
    uow: UnitOfWork, reset: CeilingReset, *, cause: str, delivery: Cause = None, now: datetime | None = None
) -> ResetOutcome:
    """Open the programme's next budget year for all its grants at once (set-based, one transaction).

    Idempotent per programme and year: the same year again changes nothing; an earlier year stays
    closed. A reset the ledger can never apply (unknown programme, wrong currency, a skipped year)
    is parked on the dead-letter topic with the reason, loudly, instead of being half-applied."""
    now = now or datetime.now(UTC)
    conn = uow.conn
    if reset.reset_id != reset_id(reset.programme, reset.budget_year):
        raise PoisonMessage(f"reset_id must be '{reset_id(reset.programme, reset.budget_year)}'")
    state = await repository.lock_programme(conn, reset.programme, exclusive=True)
    if state is None:
        raise PoisonMessage(f"programme {reset.programme!r} is not configured in the budget ledger")
    maximum = reset.yearly_maximum
    if maximum is not None and maximum.currency != state.currency:
        raise PoisonMessage(f"yearly maximum in {maximum.currency}, programme {reset.programme} is in {state.currency}")
    opened = await repository.year_opened(conn, reset.programme, reset.budget_year)
    decision = decide_reset(state.open_year, reset.budget_year, opened)
    if decision == "gap":
        raise PoisonMessage(
            f"cannot open {reset.budget_year}: {reset.programme} has {state.open_year} open; open the years in turn"
        )
    if decision != "open":
        log.info(
            "ceiling reset changes nothing",
            decision=decision,
            programme=reset.programme,
            budget_year=reset.budget_year,
            open_year=state.open_year,
        )
        return ResetOutcome(decision)
    if maximum is None and state.yearly_maximum_required:
        raise PoisonMessage(f"{reset.programme} needs the agency's yearly maximum to open {reset.budget_year}")
    result = await repository.apply_reset(
        conn,
        reset.programme,
        reset.budget_year,
        maximum.amount_minor if maximum else None,
        reset_id=reset.reset_id,
        opened_at=reset.opened_at,
        cause=cause,
        at=now,
    )
    log.info(
        "budget year opened",
        programme=reset.programme,
        budget_year=reset.budget_year,
        slices_opened=result.slices_opened,
        slices_capped=result.slices_capped,
        amount_capped_minor=result.amount_capped_minor,
        slices_closed=result.slices_closed,
    )
    return ResetOutcome("open", result.slices_opened, result.slices_capped, result.amount_capped_minor, result.slices_closed)


async def request_year_opening(
    uow: UnitOfWork,
    config: BudgetConfig,
    programme: str,
    budget_year: int,
    yearly_maximum_minor: int | None,
    *,
    now: datetime | None = None,
) -> Literal["requested", "already_requested"]:
    """The operator command (or a scheduled job): publish CeilingReset through the outbox, once per
    programme and year, and only for the next year inside the programme's period (ValueError
    otherwise: `check_year_opening`). The service applies it when it consumes it."""
    now = now or datetime.now(UTC)
    spec = config.programmes.get(programme)
    if spec is None:
        raise ValueError(f"unknown programme {programme!r}; known: {', '.join(sorted(config.programmes))}")
    if spec.yearly_maximum_required and yearly_maximum_minor is None:
        raise ValueError(f"{programme}: the agency's yearly maximum for {budget_year} is required (--yearly-maximum-minor)")
    row = await repository.programme_row(uow.conn, programme)
    problem = check_year_opening(spec, row["open_year"] if row is not None else None, budget_year)
    if problem is not None:
        raise ValueError(problem)
    event_id = reset_event_id(programme, budget_year)
    if not await repository.request_reset(uow.conn, programme, budget_year, event_id, now):
        return "already_requested"
    await uow.publish(
        CeilingReset(
            reset_id=reset_id(programme, budget_year),
            programme=programme,
            budget_year=budget_year,
            opened_at=now,
            yearly_maximum=_money(yearly_maximum_minor, spec.currency) if yearly_maximum_minor is not None else None,
        ),
        event_id=event_id,
    )
    return "requested"


# --- releases ------------------------------------------------------------------------------------------------


async def release_grant(
    uow: UnitOfWork,
    application_id: str,
    reduce_to: Mapping[int, int] | None,
    *,
    cause: str,
    now: datetime | None = None,
) -> GrantReleased | None:
    """Return a withdrawn grant's future slices (reduce_to None), or cut named future years to new
    amounts, as release entries. None when there is nothing to return (e.g. done before)."""
    now = now or datetime.now(UTC)
    conn = uow.conn
    await repository.lock_application(conn, application_id)
    found = await repository.programme_of_grant(conn, application_id)
    if found is None:
        raise ReleaseError(f"no committed grant for application {application_id}")
    await repository.lock_programme(conn, found, exclusive=False)
    grant = await repository.lock_grant(conn, application_id)
    assert grant is not None
    if grant.status == "withdrawn":
        return None
    slices = await repository.slices_of(conn, grant.grant_id)
    plan = plan_release(slices, grant.fund_shares, reduce_to)
    if not plan.releases and reduce_to is not None:
        return None
    await repository.lock_pots(conn, (p.pot_id for p in plan.releases))
    reason: Literal["withdrawn", "reduced"] = "withdrawn" if reduce_to is None else "reduced"
    await repository.record_release(
        conn, grant.grant_id, plan.releases, reason=reason, withdraw=reduce_to is None, cause=cause, at=now
    )
    remaining: dict[int, int] = {}
    for s in await repository.slices_of(conn, grant.grant_id):
        if s.unit != COUNT and s.amount > 0:
            remaining[s.budget_year] = remaining.get(s.budget_year, 0) + s.amount
    currency = grant.currency
    event = GrantReleased(
        application_id=application_id,
        grant_id=grant.grant_id,
        released_at=now,
        scheme=grant.scheme,  # type: ignore[arg-type]  # stored from a SchemeId
        programme=grant.programme,
        reason=reason,
        released=[
            ReleasedAmount(
                budget_year=p.budget_year,
                fund=p.fund or "",
                # (ignore below) the pot's currency, stored from one
                amount=Money(amount_minor=p.amount, currency=currency),  # type: ignore[arg-type]
            )
            for p in plan.releases
            if p.unit != COUNT
        ],
        remaining=[
            # (ignore below) stored from a currency
            ScheduledAmount(budget_year=y, amount=Money(amount_minor=a, currency=currency))  # type: ignore[arg-type]
            for y, a in sorted(remaining.items())
        ],
    )
    await uow.publish(event)
    log.info(
        "grant released",
        grant_id=grant.grant_id,
        reason=reason,
        released_minor=sum(p.amount for p in plan.releases if p.unit != COUNT),
        counts_released=sum(p.amount for p in plan.releases if p.unit == COUNT),
    )
    return event
