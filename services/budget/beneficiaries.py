"""Ceilings per beneficiary (pure): what one beneficiary (its register identity) may receive across
ALL its grants in a scheme, and what a new grant may still take of it.

A grant's own ceilings (`domain.check_ceilings`) bound one application; these bound the sum. They
are kept per `(limit_id, beneficiary_id, budget_year)` (`budget_year` 0 for a limit over the whole
scheme) in `budget.beneficiary_limits`, locked with the pots, so two concurrent applications of one
beneficiary cannot both take the last of it.

Each limit is read word by word, as its quoted source says:

* `cap`: the document states the most that is *granted* (VLAIO: "maximum toegekende subsidie",
  "maximum 500.000 €/jaar gedurende maximum 10 jaar"): a grant is cut to what is left, and its
  schedule says which ceiling bound (`limited_by`);
* `refuse`: the document limits what one may *apply for* or receive at all (S3: "Högsta belopp att
  söka", TTC: each company "een innovatievoucher"): a request above what is left is refused.

A refusal and a cap name the ceiling, what was left and what was asked.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Literal

from shared.events import ProposedGrant, ScheduledAmount
from shared.money import Money

Kind = Literal["yearly", "total", "years", "grants"]
Reading = Literal["cap", "refuse"]
WHOLE = 0  # the budget_year of a row that spans the whole scheme


@dataclass(frozen=True)
class BeneficiaryCeiling:
    """A limit on one beneficiary's grants of one scheme's instrument, summed over its grants.

    kind `yearly`: money per budget year; `total`: money over all its grants; `years`: the number of
    distinct budget years it receives anything; `grants`: the number of grants. `values` are dated:
    the one in force on the decision's reference date applies (`None` = undated, from the start)."""

    limit_id: str
    scheme: str
    instrument: str
    kind: Kind
    reading: Reading
    values: tuple[tuple[date | None, int], ...]
    source: str
    quote: str
    currency: str | None = None
    operator_may_override: bool = False

    @property
    def unit(self) -> str:
        if self.kind in ("yearly", "total"):
            assert self.currency is not None
            return self.currency
        return "years" if self.kind == "years" else "count"

    def maximum_on(self, day: date) -> int | None:
        """The value in force on `day` (the latest dated one not after it), None before the first."""
        in_force: int | None = None
        for since, value in sorted(self.values, key=lambda v: v[0] or date.min):
            if since is None or since <= day:
                in_force = value
        return in_force

    def applies(self, scheme: str, instrument: str) -> bool:
        return self.scheme == scheme and self.instrument == instrument


@dataclass(frozen=True)
class LimitKey:
    limit_id: str
    beneficiary_id: str
    budget_year: int = WHOLE


@dataclass(frozen=True)
class LimitBalance:
    """A beneficiary's row of one limit, as locked: what its grants hold of it now.

    For `years`, `years` maps each budget year in which the beneficiary holds money to the number of
    its grants that do (`used` is the number of such years)."""

    key: LimitKey
    unit: str
    used: int
    years: Mapping[int, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Draw:
    """What one grant holds of one beneficiary row (per year for `years`: 1 for each year it has money)."""

    key: LimitKey
    unit: str
    amount: int
    budget_year: int = WHOLE  # for `years` rows: the year this draw marks


@dataclass(frozen=True)
class Bound:
    """A beneficiary ceiling that cut a grant: which, for which year, what was left, what was asked."""

    limit: str
    budget_year: int | None
    available: int
    requested: int
    unit: str


@dataclass(frozen=True)
class BeneficiaryRefusal:
    limit: str
    message_key: str
    budget_year: int | None
    available: int | None
    requested: int | None
    unit: str | None


@dataclass
class Outcome:
    grant: ProposedGrant
    draws: list[Draw] = field(default_factory=list)
    bound: list[Bound] = field(default_factory=list)


def limit_name(ceiling: BeneficiaryCeiling) -> str:
    return f"beneficiary-ceiling:{ceiling.limit_id}"


def applicable(scheme: str, grant: ProposedGrant, ceilings: Iterable[BeneficiaryCeiling], day: date) -> list[BeneficiaryCeiling]:
    """The ceilings of the grant's scheme and instrument that have a value in force on `day`."""
    return [c for c in ceilings if c.applies(scheme, grant.instrument) and c.maximum_on(day) is not None]


def keys_for(
    scheme: str, grant: ProposedGrant, beneficiary: str, ceilings: Iterable[BeneficiaryCeiling], day: date
) -> list[LimitKey]:
    """Every beneficiary row the grant may touch (to lock them before deciding)."""
    keys: list[LimitKey] = []
    for ceiling in applicable(scheme, grant, ceilings, day):
        if ceiling.kind == "yearly":
            keys += [LimitKey(ceiling.limit_id, beneficiary, s.budget_year) for s in grant.schedule]
        else:
            keys.append(LimitKey(ceiling.limit_id, beneficiary))
    return sorted(set(keys), key=sort_key)


def sort_key(key: LimitKey) -> tuple[str, str, int]:
    return (key.limit_id, key.beneficiary_id, key.budget_year)


_ORDER: dict[Kind, int] = {"years": 0, "yearly": 1, "total": 2, "grants": 3}


def _cut(amount: ScheduledAmount, new: int, limit: str) -> ScheduledAmount:
    return amount.model_copy(
        update={
            "amount": Money(amount_minor=new, currency=amount.amount.currency),
            "requested": amount.requested or amount.amount,
            "limited_by": limit,
        }
    )


def decide(
    scheme: str,
    grant: ProposedGrant,
    beneficiary: str,
    ceilings: Iterable[BeneficiaryCeiling],
    balances: Mapping[LimitKey, LimitBalance],
    day: date,
) -> Outcome | BeneficiaryRefusal:
    """Apply every beneficiary ceiling of the grant, in a fixed order (years, yearly, total, grants).

    Returns the grant as it may be committed (cut where a `cap` ceiling bound) with what it will
    hold of each row, or the refusal naming the ceiling, what was left and what was asked."""
    schedule = {s.budget_year: s for s in grant.schedule}
    dropped: list[ScheduledAmount] = []
    bound: list[Bound] = []

    def drop(year: int, limit: str) -> None:
        cut = _cut(schedule.pop(year), 0, limit)
        dropped.append(cut)

    found = sorted(applicable(scheme, grant, ceilings, day), key=lambda c: (_ORDER[c.kind], c.limit_id))
    for ceiling in found:
        maximum = ceiling.maximum_on(day)
        assert maximum is not None
        name = limit_name(ceiling)
        if ceiling.kind == "years":
            row = balances[LimitKey(ceiling.limit_id, beneficiary)]
            held = {y for y, n in row.years.items() if n > 0}
            new = sorted(y for y, s in schedule.items() if s.amount.amount_minor > 0 and y not in held)
            left = max(maximum - len(held), 0)
            if len(new) > left:
                if ceiling.reading == "refuse" or (left == 0 and not any(y in held for y in schedule)):
                    return BeneficiaryRefusal(name, "budget.beneficiary_ceiling_exceeded", new[0], left, len(new), "years")
                bound.append(Bound(name, new[left], left, len(new), "years"))
                for year in new[left:]:  # the earliest years are granted, the later ones not
                    drop(year, name)
        elif ceiling.kind == "yearly":
            for year in sorted(schedule):
                row = balances[LimitKey(ceiling.limit_id, beneficiary, year)]
                left = max(maximum - row.used, 0)
                asked = schedule[year].amount.amount_minor
                if asked <= left:
                    continue
                if ceiling.reading == "refuse":
                    return BeneficiaryRefusal(name, "budget.beneficiary_ceiling_exceeded", year, left, asked, ceiling.unit)
                bound.append(Bound(name, year, left, asked, ceiling.unit))
                if left == 0:
                    drop(year, name)
                else:
                    schedule[year] = _cut(schedule[year], left, name)
        elif ceiling.kind == "total":
            row = balances[LimitKey(ceiling.limit_id, beneficiary)]
            left = max(maximum - row.used, 0)
            asked = sum(s.amount.amount_minor for s in schedule.values())
            if asked > left:
                first = min(schedule) if schedule else None
                if ceiling.reading == "refuse":
                    return BeneficiaryRefusal(name, "budget.beneficiary_ceiling_exceeded", first, left, asked, ceiling.unit)
                bound.append(Bound(name, first, left, asked, ceiling.unit))
                room = left
                for year in sorted(schedule):  # the earliest years are granted first
                    amount = schedule[year].amount.amount_minor
                    if amount <= room:
                        room -= amount
                    elif room == 0:
                        drop(year, name)
                    else:
                        schedule[year] = _cut(schedule[year], room, name)
                        room = 0
        else:  # grants: a count of grants is never cut, only refused
            row = balances[LimitKey(ceiling.limit_id, beneficiary)]
            left = max(maximum - row.used, 0)
            if left < 1:
                first = min(schedule) if schedule else None
                return BeneficiaryRefusal(name, "budget.beneficiary_ceiling_exceeded", first, left, 1, "count")
        if not any(s.amount.amount_minor > 0 for s in schedule.values()):
            last = bound[-1] if bound else None
            return BeneficiaryRefusal(
                name,
                "budget.beneficiary_ceiling_exceeded",
                last.budget_year if last else None,
                last.available if last else 0,
                last.requested if last else None,
                last.unit if last else ceiling.unit,
            )
    capped = grant
    if bound:
        capped = grant.model_copy(
            update={
                "schedule": [schedule[y] for y in sorted(schedule)],
                "not_granted": sorted([*grant.not_granted, *dropped], key=lambda s: s.budget_year),
            }
        )
    return Outcome(capped, holdings(scheme, capped, beneficiary, found), bound)


def holdings(scheme: str, grant: ProposedGrant, beneficiary: str, ceilings: Iterable[BeneficiaryCeiling]) -> list[Draw]:
    """What a grant of this schedule holds of each beneficiary row (after a release too: recompute)."""
    years = {s.budget_year: s.amount.amount_minor for s in grant.schedule}
    return holdings_of(years, beneficiary, [c for c in ceilings if c.applies(scheme, grant.instrument)])


def draw_kind(draw: Draw) -> str:
    """The kind of ceiling a draw is held against, read off its own row (its unit and key)."""
    if draw.unit == "years":
        return "years"
    if draw.unit == "count":
        return "grants"
    return "total" if draw.key.budget_year == WHOLE else "yearly"


def held_now(draw: Draw, per_year: Mapping[int, int]) -> int:
    """What `draw` holds once its grant holds `per_year` money: `holdings_of`'s rule for the draw's
    kind, read off the draw itself, so that it holds for a ceiling the operator no longer configures
    as well (its row and the grant's draws stay, and the reconciliation checks them against the
    slices; a year's opening recomputes them by the same rule in SQL)."""
    money = {y: a for y, a in per_year.items() if a > 0}
    kind = draw_kind(draw)
    if kind == "yearly":
        return money.get(draw.key.budget_year, 0)
    if kind == "total":
        return sum(money.values())
    if kind == "years":
        return 1 if draw.budget_year in money else 0
    return 1 if money else 0


def holdings_of(per_year: Mapping[int, int], beneficiary: str, ceilings: Iterable[BeneficiaryCeiling]) -> list[Draw]:
    """The draws of a grant holding `per_year` money (minor units) of each budget year."""
    draws: list[Draw] = []
    money = {y: a for y, a in per_year.items() if a > 0}
    for ceiling in ceilings:
        if ceiling.kind == "yearly":
            draws += [Draw(LimitKey(ceiling.limit_id, beneficiary, y), ceiling.unit, a, y) for y, a in sorted(money.items())]
        elif ceiling.kind == "total":
            draws.append(Draw(LimitKey(ceiling.limit_id, beneficiary), ceiling.unit, sum(money.values())))
        elif ceiling.kind == "years":
            draws += [Draw(LimitKey(ceiling.limit_id, beneficiary), "years", 1, y) for y in sorted(money)]
        else:
            draws.append(Draw(LimitKey(ceiling.limit_id, beneficiary), "count", 1 if money else 0))
    return draws


def apply_draws(balances: dict[LimitKey, LimitBalance], draws: Iterable[Draw], sign: int = 1) -> None:
    """Add (sign 1) or return (sign -1) the draws to the in-memory balances."""
    for draw in draws:
        row = balances.get(draw.key) or LimitBalance(draw.key, draw.unit, 0)
        if draw.unit == "years":
            years = dict(row.years)
            years[draw.budget_year] = years.get(draw.budget_year, 0) + sign * draw.amount
            years = {y: n for y, n in years.items() if n > 0}
            balances[draw.key] = LimitBalance(draw.key, row.unit, len(years), years)
        else:
            balances[draw.key] = LimitBalance(draw.key, row.unit, row.used + sign * draw.amount, row.years)
