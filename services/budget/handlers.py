"""The budget's use cases, each in the caller's unit of work (one PostgreSQL transaction with the
inbox claim and the outbox; the ledger's tables as `uow.repo`): decide a batch of eligibility
decisions (commit, cap, refuse, revoke), open a budget year, release a grant's future slices, and
ask for a year to be opened.

A batch is decided at once: every application, programme, grant, beneficiary ceiling row and pot
it touches is locked once, each set in key order (the migrations' lock order); the decisions are
then taken in offset order in memory, against the balances as they stand after the ones before;
and everything they change is written set-based, one statement per table. An application that
appears twice in a batch (two revisions) starts a new round after the first, so each round holds
each application once."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

import structlog
from pydantic import AwareDatetime, TypeAdapter

from services.budget import beneficiaries as ben
from services.budget.domain import (
    COUNT,
    BudgetConfig,
    Placement,
    PotBalance,
    Refusal,
    ReleaseError,
    ReleasePlan,
    Slice,
    check_ceilings,
    check_fits,
    check_shape,
    check_year_opening,
    check_years,
    decide_reset,
    initial_state,
    place,
    plan_discontinuation,
    plan_release,
    plan_revocation,
)
from services.budget.repository import (
    Applied,
    GrantRow,
    NewGrant,
    ProgrammeState,
    RefusalRow,
    ResetResult,
    Writes,
)
from shared.delivery import Cause, HeaderTemplate, PoisonMessage, UnitOfWork
from shared.events import (
    CeilingReset,
    ClusterEvaluated,
    EligibilityDecided,
    Event,
    GrantCommitted,
    GrantRefused,
    GrantReleased,
    ProposedGrant,
    ReleasedAmount,
    ScheduledAmount,
)
from shared.money import Money, is_currency

log = structlog.get_logger("budget")

RESET_NAMESPACE = uuid.UUID("3f0c2a56-4a8e-4b1e-9a57-0c7c2b1d5e10")
#: GrantReleased.released_at as the event's JSON writes it (for the events PostgreSQL builds).
RELEASED_AT: TypeAdapter[datetime] = TypeAdapter(AwareDatetime)

Result = Literal["committed", "refused", "revoked", "kept", "skipped"]


class Repository(Protocol):
    """What the use cases need of the ledger's storage: `repository.LedgerRepository` on
    PostgreSQL, `tests/unit/budget/fakes.FakeLedgerRepository` in memory."""

    async def lock_applications(self, application_ids: Sequence[str]) -> None: ...
    async def applied(self, application_ids: Sequence[str]) -> dict[str, Applied]: ...
    async def lock_programmes(self, programmes: Sequence[str], *, exclusive: bool = False) -> dict[str, ProgrammeState]: ...
    async def lock_programme(self, programme: str, *, exclusive: bool) -> ProgrammeState | None: ...
    async def lock_grants(self, application_ids: Sequence[str]) -> dict[str, GrantRow]: ...
    async def slices_of(self, grant_ids: Sequence[str]) -> dict[str, list[Slice]]: ...
    async def draws_of(self, grant_ids: Sequence[str]) -> dict[str, list[ben.Draw]]: ...
    async def lock_limits(self, keys: Mapping[ben.LimitKey, str]) -> dict[ben.LimitKey, ben.LimitBalance]: ...
    async def lock_pots(self, pot_ids: Sequence[str]) -> dict[str, PotBalance]: ...
    async def write(self, w: Writes) -> None: ...
    async def apply_reset(
        self,
        programme: str,
        budget_year: int,
        yearly_maximum: int | None,
        *,
        reset_id: str,
        opened_at: datetime,
        cause: str,
        at: datetime,
    ) -> ResetResult: ...
    async def write_capped_releases(
        self, programme: str, budget_year: int, headers: HeaderTemplate, *, namespace: uuid.UUID, reset_id: str, released_at: str
    ) -> int: ...
    async def year_opened(self, programme: str, budget_year: int) -> bool: ...
    async def record_evaluation(
        self, evaluation_id: str, application_id: str, year: int, continues: bool, event_id: str, at: datetime
    ) -> bool: ...
    async def request_reset(self, programme: str, budget_year: int, event_id: str, at: datetime) -> bool: ...
    async def programme_row(self, programme: str) -> Mapping[str, Any] | None: ...


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
    return amount if unit in (COUNT, "years") else None


# --- decide a batch of eligibility decisions -------------------------------------------------------------


@dataclass(frozen=True)
class Item:
    """One consumed decision: the event, its identity (the `cause` of the entries it makes), and the
    delivery it came in (for the causation and correlation of what it publishes)."""

    event: EligibilityDecided
    cause: str
    delivery: Cause = None


@dataclass
class _Candidate:
    """A decision that asks for a commitment, with what can be known before any lock."""

    n: int
    item: Item
    grant: ProposedGrant
    beneficiary: str | None
    ceilings: list[ben.BeneficiaryCeiling]
    placements: list[Placement] = field(default_factory=list)
    refusal: Refusal | None = None


async def on_eligibility_decided(
    uow: UnitOfWork[Any],
    decided: EligibilityDecided,
    config: BudgetConfig,
    *,
    cause: str,
    delivery: Cause = None,
    now: datetime | None = None,
) -> Result:
    """One decision (a command, a test): the batch use case with a batch of one."""
    return (await decide_batch(uow, [Item(decided, cause, delivery)], config, now=now))[0]


async def decide_batch(
    uow: UnitOfWork[Any], items: Sequence[Item], config: BudgetConfig, *, now: datetime | None = None
) -> list[Result]:
    """Decide every item, in order, in this one transaction; one result per item."""
    now = now or datetime.now(UTC)
    results: list[Result] = []
    rounds: list[list[Item]] = [[]]
    for item in items:
        if any(i.event.application_id == item.event.application_id for i in rounds[-1]):
            rounds.append([])
        rounds[-1].append(item)
    for batch in rounds:
        if batch:
            results += await _decide_round(uow, batch, config, now)
    return results


async def _decide_round(uow: UnitOfWork[Any], items: list[Item], config: BudgetConfig, now: datetime) -> list[Result]:
    repo: Repository = uow.repo
    await repo.lock_applications([i.event.application_id for i in items])
    applied = await repo.applied([i.event.application_id for i in items])
    w = Writes()
    results: list[Result | None] = [None] * len(items)
    candidates: list[_Candidate] = []
    revoke: dict[int, GrantRow] = {}
    ended: dict[int, GrantRow] = {}
    for n, item in enumerate(items):
        ev = item.event
        seen = applied.get(ev.application_id)
        if seen is not None and ev.revision <= seen.revision:
            log.info("decision revision already applied or overtaken", revision=ev.revision, applied_revision=seen.revision)
            results[n] = "skipped"
            continue
        w.decisions[ev.application_id] = (ev.revision, item.cause, ev.outcome, now)
        grant_row = seen.grant if seen is not None else None
        if ev.outcome == "eligible" and ev.proposed_grant is not None:
            if grant_row is not None and grant_row.status == "committed":
                results[n] = "kept"  # still eligible: the commitment stands as committed
            elif grant_row is not None:
                ended[n] = grant_row
            else:
                candidates.append(_prepare(n, item, ev.proposed_grant, config))
        elif ev.outcome == "ineligible" and grant_row is not None and grant_row.status == "committed":
            revoke[n] = grant_row
        else:
            results[n] = "skipped"  # nothing committed, nothing to commit (needs_review, ineligible)

    programmes = await repo.lock_programmes(
        sorted({c.grant.programme for c in candidates if c.refusal is None} | {g.programme for g in revoke.values()})
    )
    for c in candidates:
        if c.refusal is None:
            state = programmes.get(c.grant.programme)
            if state is None:
                c.refusal = Refusal(f"programme:{c.grant.programme}", "budget.programme_not_configured")
            else:
                c.refusal = check_years(c.grant, state.open_year, state.yearly_maximum)
    grants = await repo.lock_grants(sorted(g.application_id for g in revoke.values()))
    revoke = {n: grants[g.application_id] for n, g in revoke.items() if grants.get(g.application_id, g).status == "committed"}
    slices = await repo.slices_of([g.grant_id for g in revoke.values()])
    draws = await repo.draws_of([g.grant_id for g in revoke.values()])

    keys: dict[ben.LimitKey, str] = {}
    for c in candidates:
        if c.refusal is None and c.beneficiary is not None:
            for ceiling in c.ceilings:
                for limit_key in ben.keys_for(
                    c.item.event.scheme, c.grant, c.beneficiary, [ceiling], c.item.event.reference_date
                ):
                    keys[limit_key] = ceiling.unit
    for grant_draws in draws.values():
        keys.update({d.key: d.unit for d in grant_draws})
    limits = await repo.lock_limits(keys)
    plans = {n: plan_revocation(slices[g.grant_id]) for n, g in revoke.items()}
    pot_ids = {p.pot_id for c in candidates if c.refusal is None for p in c.placements}
    pot_ids |= {p.pot_id for plan in plans.values() for p in plan.releases}
    pots = await repo.lock_pots(sorted(pot_ids))

    events: list[tuple[Event, Cause]] = []
    by_n = {c.n: c for c in candidates}
    for n, item in enumerate(items):
        if n in revoke:
            grant_row = revoke[n]
            event = _release(
                w,
                grant_row,
                slices[grant_row.grant_id],
                draws[grant_row.grant_id],
                plans[n],
                limits,
                pots,
                reason="revoked",
                status="revoked",
                cause=item.cause,
                now=now,
            )
            events.append((event, item.delivery))
            results[n] = "revoked"
        elif n in ended:
            key = "budget.grant_revoked_before" if ended[n].status == "revoked" else "budget.grant_withdrawn_before"
            refusal = Refusal(f"grant:{item.event.application_id}", key)
            events.append(_refuse(w, item, refusal, now))
            results[n] = "refused"
        elif n in by_n:
            outcome, result = _commit(w, config, by_n[n], programmes, limits, pots, now)
            events.append((outcome, item.delivery))
            results[n] = result
    await repo.write(w)
    for outgoing, delivery in events:
        await uow.publish(outgoing, cause=delivery)
    return [r or "skipped" for r in results]


def _prepare(n: int, item: Item, grant: ProposedGrant, config: BudgetConfig) -> _Candidate:
    """What a decision can be told before any lock: its shape, its own ceilings, its pots."""
    ev = item.event
    beneficiary = grant.beneficiary_id or ev.beneficiary_id
    ceilings = ben.applicable(ev.scheme, grant, config.beneficiary_ceilings, ev.reference_date)
    capped = frozenset(c.kind for c in ceilings if c.reading == "cap") if beneficiary else frozenset[str]()
    c = _Candidate(n, item, grant, beneficiary, ceilings)
    c.refusal = check_shape(grant, config) or check_ceilings(ev.scheme, grant, config.ceilings, capped)
    if c.refusal is None and ceilings and beneficiary is None:
        c.refusal = Refusal(f"beneficiary:{ev.scheme}", "budget.beneficiary_unknown")
    if c.refusal is None:
        placed = place(grant, config)
        if isinstance(placed, Refusal):
            c.refusal = placed
        else:
            c.placements = placed
    return c


def _commit(
    w: Writes,
    config: BudgetConfig,
    c: _Candidate,
    programmes: Mapping[str, ProgrammeState],
    limits: dict[ben.LimitKey, ben.LimitBalance],
    pots: dict[str, PotBalance],
    now: datetime,
) -> tuple[Event, Result]:
    """Commit one candidate against the balances as the batch has left them, or refuse it."""
    ev = c.item.event
    if c.refusal is not None:
        return _refuse(w, c.item, c.refusal, now)[0], "refused"
    grant, placements, outcome = c.grant, c.placements, None
    if c.ceilings:
        assert c.beneficiary is not None
        decided = ben.decide(ev.scheme, grant, c.beneficiary, c.ceilings, limits, ev.reference_date)
        if isinstance(decided, ben.BeneficiaryRefusal):
            refusal = Refusal(
                decided.limit, decided.message_key, decided.budget_year, decided.available, decided.requested, decided.unit
            )
            return _refuse(w, c.item, refusal, now)[0], "refused"
        outcome = decided
        if decided.bound:
            grant = decided.grant
            placed = place(grant, config)
            if isinstance(placed, Refusal):
                return _refuse(w, c.item, placed, now)[0], "refused"
            placements = placed
    missing = sorted({p.pot_id for p in placements} - set(pots))
    # A pot configured but not (yet) loaded into this ledger refuses as not configured.
    unfit = Refusal(f"pot:{missing[0]}", "budget.pot_not_configured") if missing else check_fits(placements, pots)
    if unfit is not None:
        return _refuse(w, c.item, unfit, now)[0], "refused"

    state = programmes[grant.programme]
    grant_id = str(uuid.uuid4())
    w.grants.append(
        NewGrant(
            grant_id=grant_id,
            application_id=ev.application_id,
            scheme=ev.scheme,
            programme=grant.programme,
            instrument=grant.instrument,
            currency=grant.currency,
            conditional=grant.conditional,
            fund_shares=[(s.fund, s.numerator, s.denominator) for s in grant.fund_shares],
            grant_json=grant.model_dump(mode="json"),
            beneficiary_id=c.beneficiary,
            revision=ev.revision,
            at=now,
        )
    )
    for p in placements:
        slice_state = initial_state(p.budget_year, state.open_year)
        w.slices.append((grant_id, p.pot_id, p.budget_year, grant.programme, p.unit, p.fund, p.amount, slice_state))
        w.entry(p, grant_id, "commit", "committed", c.item.cause, now)
        if slice_state == "open":
            w.entry(p, grant_id, "open", "committed_in_open_year", c.item.cause, now)
        pot = pots[p.pot_id]
        pots[p.pot_id] = w.pots[p.pot_id] = replace(pot, committed=pot.committed + p.amount)
    if outcome is not None:
        ben.apply_draws(limits, outcome.draws)
        maxima = {b.limit_id: b.maximum_on(ev.reference_date) for b in c.ceilings}
        for draw in outcome.draws:
            w.draws.append((grant_id, draw))
            w.limits[draw.key] = (limits[draw.key], maxima.get(draw.key.limit_id))
        for bound in outcome.bound:
            log.info(
                "grant cut to a beneficiary ceiling",
                limit=bound.limit,
                budget_year=bound.budget_year,
                available=bound.available,
                requested=bound.requested,
                unit=bound.unit,
            )
    log.info(
        "grant committed",
        grant_id=grant_id,
        revision=ev.revision,
        programme=grant.programme,
        instrument=grant.instrument,
        currency=grant.currency,
        amount_minor=grant.total.amount_minor,
        pots=sorted({p.pot_id for p in placements}),
    )
    committed = GrantCommitted(
        application_id=ev.application_id,
        grant_id=grant_id,
        committed_at=now,
        scheme=ev.scheme,
        grant=grant,
        recipient=ev.recipient,
    )
    return committed, "committed"


def _refuse(w: Writes, item: Item, refusal: Refusal, now: datetime) -> tuple[Event, Cause]:
    ev = item.event
    w.refusals.append(RefusalRow(ev.application_id, ev.revision, refusal, now))
    log.info(
        "grant refused",
        limit=refusal.limit,
        message_key=refusal.message_key,
        budget_year=refusal.budget_year,
        available=refusal.available,
        requested=refusal.requested,
        unit=refusal.unit,
    )
    event = GrantRefused(
        application_id=ev.application_id,
        refused_at=now,
        scheme=ev.scheme,
        limit=refusal.limit,
        message_key=refusal.message_key,
        budget_year=refusal.budget_year,
        available=_money(refusal.available, refusal.unit),
        requested=_money(refusal.requested, refusal.unit),
        available_count=_count(refusal.available, refusal.unit),
        requested_count=_count(refusal.requested, refusal.unit),
        recipient=ev.recipient,
    )
    return event, item.delivery


def _release(
    w: Writes,
    grant: GrantRow,
    slices: list[Slice],
    draws: list[ben.Draw],
    plan: ReleasePlan,
    limits: dict[ben.LimitKey, ben.LimitBalance],
    pots: dict[str, PotBalance],
    *,
    reason: Literal["withdrawn", "reduced", "revoked", "not_continued"],
    status: str | None,
    cause: str,
    now: datetime,
) -> GrantReleased:
    """Return `plan`'s slices to their pots and the room they held of the beneficiary's ceilings."""
    returned: dict[tuple[str, int], int] = {}
    for p in plan.releases:
        w.entry(p, grant.grant_id, "release", reason, cause, now)
        w.released_slices.append((grant.grant_id, p.pot_id, p.budget_year, p.amount))
        pot = pots[p.pot_id]
        pots[p.pot_id] = w.pots[p.pot_id] = replace(pot, released=pot.released + p.amount)
        returned[(p.pot_id, p.budget_year)] = returned.get((p.pot_id, p.budget_year), 0) + p.amount
    if status is not None:
        w.grant_status.append((grant.grant_id, status, now))
    remaining: dict[int, int] = {}
    for s in slices:
        if s.unit != COUNT:
            left = s.amount - returned.get((s.pot_id, s.budget_year), 0)
            remaining[s.budget_year] = remaining.get(s.budget_year, 0) + left
    if grant.beneficiary_id is not None:
        for old in draws:  # every draw the grant holds, of a ceiling configured now or not
            new = replace(old, amount=ben.held_now(old, remaining))
            if new.amount != old.amount:
                ben.apply_draws(limits, [old], -1)
                ben.apply_draws(limits, [new], 1)
                w.draws.append((grant.grant_id, new))
                w.limits[old.key] = (limits[old.key], None)
    currency = grant.currency
    log.info(
        "grant released",
        grant_id=grant.grant_id,
        reason=reason,
        released_minor=sum(p.amount for p in plan.releases if p.unit != COUNT),
        counts_released=sum(p.amount for p in plan.releases if p.unit == COUNT),
    )
    return GrantReleased(
        application_id=grant.application_id,
        grant_id=grant.grant_id,
        released_at=now,
        scheme=grant.scheme,  # type: ignore[arg-type]  # a scheme id as committed, read back from the ledger
        programme=grant.programme,
        reason=reason,
        released=[
            ReleasedAmount(
                budget_year=p.budget_year,
                fund=p.fund or "",
                amount=Money(amount_minor=p.amount, currency=currency),  # type: ignore[arg-type]  # the grant's currency
            )
            for p in plan.releases
            if p.unit != COUNT
        ],
        remaining=[
            ScheduledAmount(budget_year=y, amount=Money(amount_minor=a, currency=currency))  # type: ignore[arg-type]  # as above
            for y, a in sorted(remaining.items())
            if a > 0
        ],
    )


# --- the yearly ceiling reset ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ResetOutcome:
    decision: str
    opened: int = 0
    capped: int = 0
    capped_minor: int = 0
    closed: int = 0


async def on_ceiling_reset(
    uow: UnitOfWork[Any], reset: CeilingReset, *, cause: str, delivery: Cause = None, now: datetime | None = None
) -> ResetOutcome:
    """Open the programme's next budget year for all its grants at once (set-based, one transaction).

    Idempotent per programme and year: the same year again changes nothing; an earlier year stays
    closed. A reset the ledger can never apply (unknown programme, wrong currency, a skipped year)
    is parked on the dead-letter topic with the reason, loudly, instead of being half-applied."""
    now = now or datetime.now(UTC)
    repo: Repository = uow.repo
    if reset.reset_id != reset_id(reset.programme, reset.budget_year):
        raise PoisonMessage(f"reset_id must be '{reset_id(reset.programme, reset.budget_year)}'")
    state = await repo.lock_programme(reset.programme, exclusive=True)
    if state is None:
        raise PoisonMessage(f"programme {reset.programme!r} is not configured in the budget ledger")
    maximum = reset.yearly_maximum
    if maximum is not None and maximum.currency != state.currency:
        raise PoisonMessage(f"yearly maximum in {maximum.currency}, programme {reset.programme} is in {state.currency}")
    opened = await repo.year_opened(reset.programme, reset.budget_year)
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
    result = await repo.apply_reset(
        reset.programme,
        reset.budget_year,
        maximum.amount_minor if maximum else None,
        reset_id=reset.reset_id,
        opened_at=reset.opened_at,
        cause=cause,
        at=now,
    )
    # Every capped grant is told by a GrantReleased (reason capped), in the reset's transaction: an
    # agency system summing GrantCommitted minus GrantReleased holds what the ledger holds, to the cent.
    # PostgreSQL builds and writes them in one statement: a year's opening may cap tens of thousands of
    # grants, and each event through Python (validated, serialised, sent back) cost more than opening.
    capped = 0
    if result.slices_capped:
        released_at = RELEASED_AT.dump_python(RELEASED_AT.validate_python(now), mode="json")  # aware, or it raises

        async def write(headers: HeaderTemplate) -> int:
            return await repo.write_capped_releases(
                reset.programme,
                reset.budget_year,
                headers,
                namespace=RESET_NAMESPACE,
                reset_id=reset.reset_id,
                released_at=released_at,
            )

        capped = await uow.publish_by_statement(GrantReleased, write, cause=delivery)
    log.info(
        "budget year opened",
        programme=reset.programme,
        budget_year=reset.budget_year,
        slices_opened=result.slices_opened,
        slices_capped=result.slices_capped,
        grants_capped=capped,
        amount_capped_minor=result.amount_capped_minor,
        slices_closed=result.slices_closed,
    )
    return ResetOutcome("open", result.slices_opened, result.slices_capped, result.amount_capped_minor, result.slices_closed)


async def request_year_opening(
    uow: UnitOfWork[Any],
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
    row = await uow.repo.programme_row(programme)
    problem = check_year_opening(spec, row["open_year"] if row is not None else None, budget_year)
    if problem is not None:
        raise ValueError(problem)
    event_id = reset_event_id(programme, budget_year)
    if not await uow.repo.request_reset(programme, budget_year, event_id, now):
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
    uow: UnitOfWork[Any],
    application_id: str,
    reduce_to: Mapping[int, int] | None,
    *,
    cause: str,
    now: datetime | None = None,
) -> GrantReleased | None:
    """Return a withdrawn grant's future slices (reduce_to None), or cut named future years to new
    amounts, as release entries; the room the grant held of its beneficiary's ceilings returns too.
    None when there is nothing to return (e.g. done before)."""
    now = now or datetime.now(UTC)
    repo: Repository = uow.repo
    await repo.lock_applications([application_id])
    found = (await repo.applied([application_id])).get(application_id)
    if found is None or found.grant is None:
        raise ReleaseError(f"no committed grant for application {application_id}")
    await repo.lock_programmes([found.grant.programme])
    grant = (await repo.lock_grants([application_id]))[application_id]
    if grant.status != "committed":
        return None
    slices = (await repo.slices_of([grant.grant_id]))[grant.grant_id]
    plan = plan_release(slices, grant.fund_shares, reduce_to)
    if not plan.releases and reduce_to is not None:
        return None
    draws = (await repo.draws_of([grant.grant_id]))[grant.grant_id]
    limits = await repo.lock_limits({d.key: d.unit for d in draws})
    pots = await repo.lock_pots(sorted({p.pot_id for p in plan.releases}))
    w = Writes()
    withdraw = reduce_to is None
    event = _release(
        w,
        grant,
        slices,
        draws,
        plan,
        limits,
        pots,
        reason="withdrawn" if withdraw else "reduced",
        status="withdrawn" if withdraw else None,
        cause=cause,
        now=now,
    )
    if not withdraw:
        w.grant_status.append((grant.grant_id, grant.status, now))
    await repo.write(w)
    await uow.publish(event)
    return event


# --- Norway's annual evaluation ------------------------------------------------------------------------------


async def on_cluster_evaluated(
    uow: UnitOfWork[Any],
    evaluated: ClusterEvaluated,
    *,
    cause: str,
    delivery: Cause = None,
    now: datetime | None = None,
) -> GrantReleased | None:
    """A cluster that does not continue after `year`: its grant's slices of later budget years return
    (GrantReleased, reason not_continued), exactly once per evaluation. A cluster that continues, or
    an evaluation applied before, changes nothing. An evaluation that contradicts the grant it names
    (another programme or beneficiary) is parked with the reason."""
    now = now or datetime.now(UTC)
    repo: Repository = uow.repo
    application_id = evaluated.application_id
    if evaluated.evaluation_id != f"{application_id}/{evaluated.year}":
        raise PoisonMessage(f"evaluation_id must be '{application_id}/{evaluated.year}'")
    await repo.lock_applications([application_id])
    found = (await repo.applied([application_id])).get(application_id)
    grant = found.grant if found is not None else None
    if grant is not None and (
        grant.programme != evaluated.programme or grant.beneficiary_id not in (None, evaluated.beneficiary_id)
    ):
        raise PoisonMessage(
            f"the evaluation names programme {evaluated.programme} and another beneficiary than the grant of {application_id}"
        )
    if not await repo.record_evaluation(evaluated.evaluation_id, application_id, evaluated.year, evaluated.continues, cause, now):
        log.info("evaluation applied before", evaluation_id=evaluated.evaluation_id)
        return None
    if evaluated.continues:
        log.info("cluster continues", year=evaluated.year)
        return None
    if grant is None or grant.status != "committed":
        log.info("cluster does not continue; no committed grant to release", year=evaluated.year)
        return None
    await repo.lock_programmes([grant.programme])
    grant = (await repo.lock_grants([application_id]))[application_id]
    slices = (await repo.slices_of([grant.grant_id]))[grant.grant_id]
    plan = plan_discontinuation(slices, evaluated.year)
    if not plan.releases:
        log.info("cluster does not continue; nothing after its year to release", year=evaluated.year)
        return None
    draws = (await repo.draws_of([grant.grant_id]))[grant.grant_id]
    limits = await repo.lock_limits({d.key: d.unit for d in draws})
    pots = await repo.lock_pots(sorted({p.pot_id for p in plan.releases}))
    w = Writes()
    event = _release(w, grant, slices, draws, plan, limits, pots, reason="not_continued", status=None, cause=cause, now=now)
    w.grant_status.append((grant.grant_id, grant.status, now))
    await repo.write(w)
    await uow.publish(event, cause=delivery)
    return event
