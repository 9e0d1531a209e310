"""The budget's pure rules: which pots and limits a proposed grant touches, whether it fits, what a
release returns and what a ceiling reset opens. No I/O here: the handlers feed these functions the
rows they locked and write what they return.

Units: every amount is an integer of minor units of one currency (shared.money.CURRENCIES); counted
limits use the unit 'count'. Amounts of different units are never added: a pot has one unit, and a
grant draws only on pots of its own currency.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Literal

from services.budget.beneficiaries import BeneficiaryCeiling
from shared.events import ProposedGrant

COUNT = "count"


# --- configuration: what the documents and the operator set ----------------------------------------


@dataclass(frozen=True)
class Period:
    """The budget years a programme runs, first and last included, with where they come from."""

    first_year: int
    last_year: int
    source: str


@dataclass(frozen=True)
class ProgrammeSpec:
    """A budget programme: the currency of all its money pots."""

    programme: str
    currency: str
    source: str
    yearly_maximum_required: bool = False
    """Opening a year must state the agency's yearly maximum (VLAIO Hermes earmark, seed 001)."""
    period: Period | None = None
    """Its budget years (None: not set; no year can be opened until the operator sets it)."""


def check_year_opening(spec: ProgrammeSpec, open_year: int | None, budget_year: int) -> str | None:
    """Why `budget_year` may not be opened now (None: it may). Only the next year inside the
    programme's period opens: the first year of the period when none is open, else the year after
    the open one; asking again for the open year changes nothing and is allowed. A typo (1800,
    2030) can therefore neither close years that are still running nor open one out of turn."""
    period = spec.period
    if period is None:
        return f"the period of {spec.programme} is not set: the operator sets `period` in BUDGET_POTS_FILE"
    if not period.first_year <= budget_year <= period.last_year:
        return (
            f"{budget_year} lies outside the period of {spec.programme}, {period.first_year}-{period.last_year} ({period.source})"
        )
    if open_year is None:
        if budget_year != period.first_year:
            return f"no year of {spec.programme} is open yet: the first to open is {period.first_year}"
        return None
    if budget_year not in (open_year, open_year + 1):
        return f"{spec.programme} has {open_year} open: only {open_year + 1} can be opened next"
    return None


@dataclass(frozen=True)
class PotSpec:
    """A pot: money of one fund source, or a count of grants of some instruments.

    `total` None: declared (by a document, e.g. a range) but not yet set by the operator; a grant
    that needs the pot is refused with `budget.limit_not_set`, never measured against a guess."""

    pot_id: str
    programme: str
    unit: str
    total: int | None
    source: str
    fund: str | None = None
    instruments: tuple[str, ...] = ()
    budget_year: int | None = None
    allowed_range: tuple[int, int] | None = None

    @property
    def is_count(self) -> bool:
        return self.unit == COUNT


@dataclass(frozen=True)
class Ceiling:
    """A per-grant limit of one scheme's instrument, for the budget years it applies to."""

    scheme: str
    instrument: str
    currency: str
    source: str
    yearly_minor: int | None = None
    total_minor: int | None = None
    max_years: int | None = None
    from_year: int | None = None
    to_year: int | None = None

    def applies(self, scheme: str, instrument: str, year: int) -> bool:
        return (
            self.scheme == scheme
            and self.instrument == instrument
            and (self.from_year is None or year >= self.from_year)
            and (self.to_year is None or year <= self.to_year)
        )


@dataclass(frozen=True)
class BudgetConfig:
    programmes: Mapping[str, ProgrammeSpec]
    pots: tuple[PotSpec, ...]
    ceilings: tuple[Ceiling, ...]
    beneficiary_ceilings: tuple[BeneficiaryCeiling, ...] = ()

    def pots_of(self, programme: str) -> list[PotSpec]:
        return [p for p in self.pots if p.programme == programme]


# --- outcomes ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Refusal:
    """Why a grant cannot be committed: the limit, what was left and what was asked (in `unit`)."""

    limit: str
    message_key: str
    budget_year: int | None = None
    available: int | None = None
    requested: int | None = None
    unit: str | None = None


@dataclass(frozen=True)
class Draw:
    """An amount one grant draws on one fund in one budget year."""

    fund: str
    budget_year: int
    amount_minor: int


@dataclass(frozen=True)
class Placement:
    """One line of a commitment: `amount` of `unit` from pot `pot_id` for `budget_year`."""

    pot_id: str
    budget_year: int
    unit: str
    amount: int
    fund: str | None = None


@dataclass(frozen=True)
class PotBalance:
    """A pot as locked: its total and the materialised sums of its entries."""

    pot_id: str
    unit: str
    total: int
    committed: int
    released: int

    @property
    def available(self) -> int:
        return self.total - self.committed + self.released


# --- the grant's own shape and per-grant ceilings -----------------------------------------------------


def check_shape(grant: ProposedGrant, config: BudgetConfig) -> Refusal | None:
    """The grant's programme is known, in its currency; shares are exact and whole; years distinct."""
    programme = config.programmes.get(grant.programme)
    if programme is None:
        return Refusal(f"programme:{grant.programme}", "budget.programme_not_configured")
    if programme.currency != grant.currency:
        return Refusal(f"currency:{grant.programme}", "budget.currency_mismatch", unit=grant.currency)
    funds = [s.fund for s in grant.fund_shares]
    if len(set(funds)) != len(funds):
        return Refusal(f"fund-shares:{grant.programme}", "budget.fund_shares_duplicate")
    if sum((Fraction(s.numerator, s.denominator) for s in grant.fund_shares), Fraction(0)) != 1:
        return Refusal(f"fund-shares:{grant.programme}", "budget.fund_shares_not_whole")
    if grant.conditional and len(grant.fund_shares) != 1:
        return Refusal(f"fund-shares:{grant.programme}", "budget.conditional_single_fund_only")
    years = [s.budget_year for s in grant.schedule]
    if len(set(years)) != len(years):
        return Refusal(f"schedule:{grant.programme}", "budget.schedule_duplicate_year")
    if grant.total.amount_minor <= 0:
        return Refusal(f"schedule:{grant.programme}", "budget.schedule_empty", unit=grant.currency)
    return None


def check_ceilings(
    scheme: str, grant: ProposedGrant, ceilings: Iterable[Ceiling], capped: frozenset[str] = frozenset()
) -> Refusal | None:
    """Per-grant ceilings of the scheme's instrument: each year, the whole grant, the years it spans.

    Eligibility already caps each year; the ledger checks again because it is the authority.
    `capped`: the kinds ('yearly', 'years') a beneficiary ceiling that caps covers; one grant is then
    cut by that ceiling (it sums the beneficiary's grants, this one included) instead of refused."""
    years = sorted(s.budget_year for s in grant.schedule)
    span = years[-1] - years[0] + 1
    total = grant.total.amount_minor
    for slice_ in sorted(grant.schedule, key=lambda s: s.budget_year):
        for ceiling in ceilings:
            if not ceiling.applies(scheme, grant.instrument, slice_.budget_year):
                continue
            name = f"{scheme}/{grant.instrument}"
            if ceiling.currency != grant.currency:
                return Refusal(f"ceiling:{name}", "budget.currency_mismatch", unit=grant.currency)
            if "yearly" not in capped and ceiling.yearly_minor is not None and slice_.amount.amount_minor > ceiling.yearly_minor:
                return Refusal(
                    f"yearly-ceiling:{name}",
                    "budget.yearly_ceiling_exceeded",
                    slice_.budget_year,
                    ceiling.yearly_minor,
                    slice_.amount.amount_minor,
                    grant.currency,
                )
            if ceiling.total_minor is not None and total > ceiling.total_minor:
                return Refusal(
                    f"grant-ceiling:{name}",
                    "budget.grant_ceiling_exceeded",
                    years[0],
                    ceiling.total_minor,
                    total,
                    grant.currency,
                )
            if "years" not in capped and ceiling.max_years is not None and span > ceiling.max_years:
                return Refusal(
                    f"duration:{name}",
                    "budget.too_many_years",
                    years[-1],
                    ceiling.max_years,
                    span,
                    "years",
                )
    return None


def check_years(grant: ProposedGrant, open_year: int | None, yearly_maximum: int | None) -> Refusal | None:
    """A closed year stays closed; a conditional slice in the open year respects that year's maximum."""
    for slice_ in sorted(grant.schedule, key=lambda s: s.budget_year):
        year = slice_.budget_year
        if open_year is not None and year < open_year and slice_.amount.amount_minor > 0:
            return Refusal(f"year:{grant.programme}/{year}", "budget.year_closed", year)
        if grant.conditional and year == open_year and yearly_maximum is not None and slice_.amount.amount_minor > yearly_maximum:
            return Refusal(
                f"yearly-maximum:{grant.programme}/{year}",
                "budget.yearly_maximum_exceeded",
                year,
                yearly_maximum,
                slice_.amount.amount_minor,
                grant.currency,
            )
    return None


# --- how a grant splits over pots ----------------------------------------------------------------------


def split_amount(amount: int, shares: list[tuple[int, int]]) -> list[int]:
    """Split `amount` exactly over `shares` (numerator, denominator): each part rounded down, the
    remainder (a few minor units at most) to the first share, so the parts sum to the whole."""
    parts = [amount * numerator // denominator for numerator, denominator in shares]
    parts[0] += amount - sum(parts)
    return parts


def split(grant: ProposedGrant) -> list[Draw]:
    """Every yearly amount split over the grant's fund shares, in the proportion the programme sets."""
    shares = [(s.numerator, s.denominator) for s in grant.fund_shares]
    draws: list[Draw] = []
    for slice_ in grant.schedule:
        parts = split_amount(slice_.amount.amount_minor, shares)
        draws += [
            Draw(share.fund, slice_.budget_year, part) for share, part in zip(grant.fund_shares, parts, strict=True) if part > 0
        ]
    return draws


def fund_pot(draw: Draw, pots: list[PotSpec], currency: str) -> PotSpec | None:
    """A year's own pot if the programme has one for that year, else its whole-period pot."""
    money = [p for p in pots if not p.is_count and p.fund == draw.fund and p.unit == currency]
    yearly = [p for p in money if p.budget_year == draw.budget_year]
    if yearly:
        return yearly[0]
    period = [p for p in money if p.budget_year is None]
    return period[0] if period else None


def count_pots(grant: ProposedGrant, pots: list[PotSpec]) -> list[PotSpec]:
    """Counted limits on the grant's instrument: the whole-period ones, and those of its first year."""
    first = min(s.budget_year for s in grant.schedule)
    return [p for p in pots if p.is_count and grant.instrument in p.instruments and p.budget_year in (None, first)]


def place(grant: ProposedGrant, config: BudgetConfig) -> list[Placement] | Refusal:
    """Every pot and counted limit the grant touches, with what it draws on each."""
    pots = config.pots_of(grant.programme)
    placements: list[Placement] = []
    for draw in split(grant):
        pot = fund_pot(draw, pots, grant.currency)
        if pot is None:
            return Refusal(
                f"pot:{grant.programme}/{draw.fund}",
                "budget.pot_not_configured",
                draw.budget_year,
                None,
                draw.amount_minor,
                grant.currency,
            )
        if pot.total is None:
            return Refusal(f"pot:{pot.pot_id}", "budget.limit_not_set", draw.budget_year)
        placements.append(Placement(pot.pot_id, draw.budget_year, pot.unit, draw.amount_minor, draw.fund))
    first = min(s.budget_year for s in grant.schedule)
    for pot in count_pots(grant, pots):
        if pot.total is None:
            return Refusal(f"count:{pot.pot_id}", "budget.limit_not_set", first)
        placements.append(Placement(pot.pot_id, first, COUNT, 1))
    return placements


def need_per_pot(placements: Iterable[Placement]) -> dict[str, int]:
    need: dict[str, int] = defaultdict(int)
    for placement in placements:
        need[placement.pot_id] += placement.amount
    return dict(need)


def check_fits(placements: list[Placement], balances: Mapping[str, PotBalance]) -> Refusal | None:
    """The first pot (in pot_id order) the grant does not fit, or None: neither pot may go below zero."""
    need = need_per_pot(placements)
    first_year = {p.pot_id: p.budget_year for p in sorted(placements, key=lambda p: -p.budget_year)}
    for pot_id in sorted(need):
        balance = balances[pot_id]
        if need[pot_id] > balance.available:
            counted = balance.unit == COUNT
            return Refusal(
                f"{'count' if counted else 'pot'}:{pot_id}",
                "budget.count_exhausted" if counted else "budget.pot_exhausted",
                first_year[pot_id],
                balance.available,
                need[pot_id],
                balance.unit,
            )
    return None


SliceState = Literal["scheduled", "open", "closed", "released"]


def initial_state(budget_year: int, open_year: int | None) -> SliceState:
    """A slice in the programme's open year is available at once; later years wait for their reset."""
    return "open" if open_year is not None and budget_year == open_year else "scheduled"


# --- releases --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Slice:
    """A grant's draw on one pot for one budget year, as the ledger holds it now."""

    pot_id: str
    budget_year: int
    unit: str
    fund: str | None
    amount: int
    state: SliceState


@dataclass(frozen=True)
class ReleasePlan:
    releases: list[Placement] = field(default_factory=list)
    """What returns to which pot (amount > 0)."""


class ReleaseError(ValueError):
    """A release the ledger cannot make (an operator error, not a budget refusal)."""


def plan_release(slices: list[Slice], shares: list[tuple[str, int, int]], reduce_to: Mapping[int, int] | None) -> ReleasePlan:
    """What a withdrawal (`reduce_to` None) or a reduction returns: only future, scheduled slices.

    Withdrawn: every scheduled slice returns whole, counted limits included (the voucher was never
    used). Reduced: each named year's money slices are cut to the new yearly amount, split over the
    fund shares as at commitment; a year already opened (or closed) cannot be released."""
    if reduce_to is None:
        return ReleasePlan(
            [
                Placement(s.pot_id, s.budget_year, s.unit, s.amount, s.fund)
                for s in slices
                if s.state == "scheduled" and s.amount > 0
            ]
        )
    money = [s for s in slices if s.unit != COUNT]
    by_year: dict[int, list[Slice]] = defaultdict(list)
    for s in money:
        by_year[s.budget_year].append(s)
    releases: list[Placement] = []
    for year, new_total in sorted(reduce_to.items()):
        if new_total < 0:
            raise ReleaseError(f"budget year {year}: a new amount cannot be negative")
        current = by_year.get(year)
        if not current:
            raise ReleaseError(f"budget year {year}: the grant has no slice in that year")
        if any(s.state != "scheduled" for s in current):
            raise ReleaseError(f"budget year {year}: already opened or closed; only future slices can be released")
        old = {s.fund: s for s in current}
        new_parts = split_amount(new_total, [(n, d) for _, n, d in shares])
        for (fund, _, _), part in zip(shares, new_parts, strict=True):
            slice_ = old.get(fund)
            before = slice_.amount if slice_ is not None else 0
            if part > before:
                raise ReleaseError(f"budget year {year}: a reduction cannot raise the {fund} share")
            if slice_ is not None and before > part:
                releases.append(Placement(slice_.pot_id, year, slice_.unit, before - part, fund))
    return ReleasePlan(releases)


def plan_revocation(slices: list[Slice]) -> ReleasePlan:
    """What a revoked grant returns (its decision revised to ineligible): every slice not yet paid
    out, i.e. scheduled (a future year) and open (its year runs; the ledger records no payment
    before the year closes), counts included. Closed years stay: that money was the year's."""
    return ReleasePlan(
        [
            Placement(s.pot_id, s.budget_year, s.unit, s.amount, s.fund)
            for s in slices
            if s.state in ("scheduled", "open") and s.amount > 0
        ]
    )


def plan_discontinuation(slices: list[Slice], last_year: int) -> ReleasePlan:
    """What a cluster that does not continue after `last_year` returns: the slices of later budget
    years not yet paid out (scheduled, or open), counts included; `last_year` and earlier stay."""
    return ReleasePlan(
        [
            Placement(s.pot_id, s.budget_year, s.unit, s.amount, s.fund)
            for s in slices
            if s.budget_year > last_year and s.state in ("scheduled", "open") and s.amount > 0
        ]
    )


# --- the yearly ceiling reset ------------------------------------------------------------------------------

ResetDecision = Literal["open", "duplicate", "closed", "gap"]


def decide_reset(open_year: int | None, budget_year: int, opened: bool) -> ResetDecision:
    """Opening `budget_year`: the next year opens; the same year again is a no-op; a year before the
    open one is closed and stays closed; skipping a year is refused (its slices would never open)."""
    if opened or open_year == budget_year:
        return "duplicate"
    if open_year is None or budget_year == open_year + 1:
        return "open"
    if budget_year < open_year:
        return "closed"
    return "gap"
