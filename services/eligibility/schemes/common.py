"""Seedwork for scheme criteria: verdicts, figures, the criterion wrapper and shared checks.

A criterion is a small pure function `(application, in_force) -> Verdict`, wrapped by
`@criterion(id, key_prefix)` into a `Criterion` that returns a `CriterionResult`. A check may
raise `Undecidable` (data the application does not carry), `OperatorParameterUnset` or
`ParameterNotInForce`; the wrapper turns each into `not_decidable` with its own message key.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from fractions import Fraction
from functools import lru_cache
from typing import Any, Final, Literal, TypeVar

from services.eligibility.parameters import InForce, OperatorKey, OperatorParameterUnset, ParameterNotInForce
from services.eligibility.registers import Identified, Identity, identify
from shared.events import (
    Application,
    CriterionResult,
    Figure,
    FundingRequest,
    FundShare,
    ProposedGrant,
    ScheduledAmount,
    SchemeId,
)
from shared.money import Currency, Money

Outcome = Literal["passed", "failed", "not_decidable"]

BUSINESS_ROLES: Final = frozenset({"enterprise", "sme", "large_enterprise"})


# --- figures (immutable, so memoised) ---------------------------------------------------------------------------------


@lru_cache(maxsize=8192)
def money(value: Money) -> Figure:
    return Figure(unit="money", value=value.amount_minor, currency=value.currency)


def percent_text(ratio: Fraction) -> str:
    """A ratio as an exact percentage string (Fraction(1, 2) -> "50"); "n/d" if not a finite decimal."""
    pct = ratio * 100
    den = pct.denominator
    for prime in (2, 5):
        while den % prime == 0:
            den //= prime
    if den != 1:
        return f"{pct.numerator}/{pct.denominator}"
    return format(Decimal(pct.numerator) / Decimal(pct.denominator), "f")


@lru_cache(maxsize=8192)
def percent(ratio: Fraction) -> Figure:
    return Figure(unit="percent", value=percent_text(ratio))


@lru_cache(maxsize=8192)
def count(value: int) -> Figure:
    return Figure(unit="count", value=value)


@lru_cache(maxsize=8192)
def years(value: int) -> Figure:
    return Figure(unit="years", value=value)


@lru_cache(maxsize=8192)
def pages(value: int) -> Figure:
    return Figure(unit="pages", value=value)


@lru_cache(maxsize=8192)
def day(value: date) -> Figure:
    return Figure(unit="date", value=value.isoformat())


@lru_cache(maxsize=8192)
def moment(value: datetime) -> Figure:
    return Figure(unit="datetime", value=value.isoformat())


@lru_cache(maxsize=8192)
def text(value: str) -> Figure:
    return Figure(unit="text", value=value)


@lru_cache(maxsize=8192)
def flag(value: bool) -> Figure:
    return Figure(unit="bool", value=value)


# --- verdicts and the criterion wrapper ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Verdict:
    outcome: Outcome
    message_key: str
    figures: Mapping[str, Figure] = field(default_factory=dict)


def passed(key: str, **figures: Figure) -> Verdict:
    return Verdict("passed", key, figures)


def failed(key: str, **figures: Figure) -> Verdict:
    return Verdict("failed", key, figures)


Limited = TypeVar("Limited", int, Money)


def at_most(requested: Limited, limit: Limited, figure: Callable[[Limited], Figure], within: str, exceeded: str) -> Verdict:
    """A limit the scheme refuses over (it does not cap): `requested <= limit` passes with `within`,
    anything more fails with `exceeded`, and either verdict quotes the same two figures."""
    if requested <= limit:
        return passed(within, requested=figure(requested), limit=figure(limit))
    return failed(exceeded, requested=figure(requested), limit=figure(limit))


def undecidable(key: str, **figures: Figure) -> Verdict:
    return Verdict("not_decidable", key, figures)


class Undecidable(Exception):
    """The application lacks data the criterion needs."""

    def __init__(self, message_key: str, **figures: Figure) -> None:
        super().__init__(message_key)
        self.message_key = message_key
        self.figures = figures


Check = Callable[[Application, InForce], Verdict]


@dataclass(frozen=True, slots=True)
class Criterion:
    """A named criterion: `id` is stable (it is in every decision), `key_prefix` scopes its message keys."""

    id: str
    key_prefix: str
    check: Check
    doc: str

    def __call__(self, application: Application, p: InForce) -> CriterionResult:
        try:
            verdict = self.check(application, p)
        except Undecidable as exc:
            verdict = undecidable(exc.message_key, **exc.figures)
        except OperatorParameterUnset as exc:
            verdict = undecidable(f"{self.key_prefix}.operator_parameter_unset", parameter=text(exc.key))
        except ParameterNotInForce as exc:
            verdict = undecidable(
                f"{self.key_prefix}.parameter_not_in_force", parameter=text(exc.name), reference_date=day(exc.on)
            )
        return CriterionResult(
            criterion=self.id, outcome=verdict.outcome, message_key=verdict.message_key, figures=dict(verdict.figures)
        )


def criterion(id_: str, key_prefix: str) -> Callable[[Check], Criterion]:
    def wrap(check: Check) -> Criterion:
        return Criterion(id=id_, key_prefix=key_prefix, check=check, doc=(check.__doc__ or "").strip())

    return wrap


Proposer = Callable[[Application, InForce], ProposedGrant | None]


@dataclass(frozen=True, slots=True)
class Assessment:
    """A competitive selection: the criteria assessors score, and the operator key of the cap.

    `competition.rank_and_select` ranks a call's eligible applications by these criteria and
    selects at most the cap (the `close-call` command).
    """

    criteria: tuple[str, ...]
    cap: OperatorKey[int]
    doc: str

    def __post_init__(self) -> None:
        if not self.criteria or len(set(self.criteria)) != len(self.criteria):
            raise ValueError(f"assessment criteria must be distinct and not empty: {self.criteria}")


@dataclass(frozen=True)
class SchemeRules:
    """Everything a scheme declares, in its folder: its criteria (in the order a decision lists
    them), its grant proposal, the operator keys its rules read, and its competitive selection."""

    scheme: SchemeId
    criteria: tuple[Criterion, ...]
    propose: Proposer
    operator_keys: tuple[OperatorKey[Any], ...] = ()
    assessment: Assessment | None = None

    def __post_init__(self) -> None:
        ids = [c.id for c in self.criteria]
        if len(set(ids)) != len(ids):
            raise ValueError(f"{self.scheme}: duplicate criterion ids {ids}")
        if self.assessment is not None and self.assessment.cap not in self.operator_keys:
            raise ValueError(f"{self.scheme}: the selection cap {self.assessment.cap.key} is not among its operator keys")


def no_grant(application: Application, p: InForce) -> ProposedGrant | None:
    """For schemes that give no money through this decision (S3 platform, VLAIO project route)."""
    return None


# --- money helpers ---------------------------------------------------------------------------


def _minor(amount_minor: int, currency: Currency) -> Money:
    """Money computed here from valid Money (a whole, non-negative number of minor units of a known
    currency): built without validating it again, since decisions compute many of them."""
    assert amount_minor >= 0
    return Money.model_construct(amount_minor=amount_minor, currency=currency)


def share_of(amount: Money, ratio: Fraction) -> Money:
    """`ratio` of `amount`, rounded DOWN to whole minor units (never grant a fraction of a cent more)."""
    return _minor(amount.amount_minor * ratio.numerator // ratio.denominator, amount.currency)


def smallest(*amounts: Money) -> Money:
    return min(amounts, key=lambda m: m.amount_minor)


def total(amounts: list[Money], currency: Currency) -> Money:
    return _minor(sum(m.amount_minor for m in amounts), currency)


def funding_of(application: Application, p: InForce, prefix: str) -> FundingRequest:
    """The funding request in the scheme's currency, or `Undecidable` (missing / other currency)."""
    funding = application.funding
    if funding is None:
        raise Undecidable(f"{prefix}.funding.missing")
    if funding.currency != p.currency:
        raise Undecidable(f"{prefix}.funding.wrong_currency", currency=text(funding.currency), scheme_currency=text(p.currency))
    return funding


def requested_total(funding: FundingRequest) -> Money:
    return total([y.requested for y in funding.years], funding.currency)


def eligible_costs_total(funding: FundingRequest) -> Money:
    return total([y.eligible_costs for y in funding.years], funding.currency)


def funding_request_check(prefix: str) -> Check:
    """The request is there and in the scheme's currency: missing -> not_decidable, other currency -> failed."""

    def check(application: Application, p: InForce) -> Verdict:
        """A funding request in the scheme's currency (missing: not decidable; other currency: failed)."""
        funding = application.funding
        if funding is None:
            raise Undecidable(f"{prefix}.funding.missing")
        if funding.currency != p.currency:
            return failed(f"{prefix}.funding.wrong_currency", currency=text(funding.currency), scheme_currency=text(p.currency))
        return passed(f"{prefix}.funding.valid", budget_years=count(len(funding.years)))

    return check


def year_span(funding: FundingRequest) -> int:
    """Budget years from the first to the last requested year, inclusive (gaps count)."""
    years_ = [y.year for y in funding.years]
    return max(years_) - min(years_) + 1


def secured_co_financing(funding: FundingRequest) -> Money:
    return total([c.amount for c in funding.co_financing if c.secured], funding.currency)


def single_fund(fund: str) -> list[FundShare]:
    return [FundShare(fund=fund, numerator=1, denominator=1)]


# --- a proposal per budget year: what is asked, what is granted, which limit bound ---------------------


@dataclass(frozen=True, slots=True)
class Line:
    """One budget year of a proposal: what was asked, what is granted, and the limit that cut it."""

    year: int
    requested: Money
    granted: Money
    limited_by: str | None = None


def lines_of(funding: FundingRequest) -> list[Line]:
    """The request per budget year, in year order, granted as asked (before any cap)."""
    return [Line(y.year, y.requested, y.requested) for y in sorted(funding.years, key=lambda y: y.year)]


def cap_each_year(lines: list[Line], limit: str, allowed: Callable[[Line], Money]) -> list[Line]:
    """Each year's grant cut to `allowed(line)` where that is less, naming `limit` as what bound."""
    out = []
    for line in lines:
        most = allowed(line)
        out.append(Line(line.year, line.requested, most, limit) if most < line.granted else line)
    return out


def cap_total(lines: list[Line], limit: str, most: Money) -> list[Line]:
    """The grant over all years cut to `most`, in year order (the earliest years are granted first)."""
    out, left = [], most.amount_minor
    for line in lines:
        if line.granted.amount_minor <= left:
            out.append(line)
            left -= line.granted.amount_minor
        else:
            out.append(Line(line.year, line.requested, _minor(left, line.granted.currency), limit))
            left = 0
    return out


def cap_years(lines: list[Line], limit: str, most_years: int) -> tuple[list[Line], list[Line]]:
    """(granted, not granted): the budget years from the first requested one up to `most_years` of them
    (gaps count), and the later years, granted nothing, with `limit` named."""
    if not lines:
        return [], []
    first = lines[0].year
    kept = [line for line in lines if line.year - first < most_years]
    dropped = [Line(x.year, x.requested, _minor(0, x.requested.currency), limit) for x in lines if x.year - first >= most_years]
    return kept, dropped


def first_cut(lines: list[Line], limit: str) -> Line | None:
    """The first year whose grant `limit` cut, if any."""
    return next((line for line in lines if line.limited_by == limit), None)


def _scheduled(line: Line) -> ScheduledAmount:
    return ScheduledAmount(budget_year=line.year, amount=line.granted, requested=line.requested, limited_by=line.limited_by)


def grant(
    p: InForce,
    instrument: str,
    lines: list[Line],
    fund_shares: list[FundShare],
    *,
    conditional: bool = False,
    not_granted: list[Line] | None = None,
) -> ProposedGrant:
    return ProposedGrant(
        programme=p.scheme.programme,
        instrument=instrument,
        currency=p.currency,
        schedule=[_scheduled(line) for line in sorted(lines, key=lambda x: x.year)],
        fund_shares=fund_shares,
        conditional=conditional,
        not_granted=[_scheduled(line) for line in sorted(not_granted or [], key=lambda x: x.year)],
    )


# --- checks several schemes share --------------------------------------------------------------


def cluster_organisation_check(prefix: str) -> Check:
    def check(application: Application, p: InForce) -> Verdict:
        if application.applicant.is_cluster_organisation:
            return passed(f"{prefix}.applicant.cluster_organisation")
        return failed(f"{prefix}.applicant.not_cluster_organisation")

    return check


def local_submission(application: Application, p: InForce) -> datetime:
    return application.submitted_at.astimezone(p.zone)


# --- the beneficiary: an identity, not a name ------------------------------------------------------


def beneficiary_of(application: Application) -> Identity:
    """The applicant's identity in its country's register (`services.eligibility.registers`)."""
    applicant = application.applicant
    return identify(applicant.country, applicant.organisation_number)


def beneficiary_check(prefix: str) -> Check:
    """The criterion every scheme that pays money has: the beneficiary is identified by its number in
    its country's register. Without a valid number, the grant could not be kept against the
    beneficiary's ceilings, so a case handler identifies it (not decidable, with the reason)."""

    def check(application: Application, p: InForce) -> Verdict:
        """The beneficiary is identified by a valid number in its country's register (KBO/BCE, KVK,
        Handelsregister, organisationsnummer, organisasjonsnummer); without one, a case handler
        identifies it."""
        identity = beneficiary_of(application)
        if isinstance(identity, Identified):
            return passed(
                f"{prefix}.beneficiary.identified", register=text(identity.register.name), beneficiary=text(identity.org_id)
            )
        country = text(application.applicant.country)
        if identity.register is None:
            return undecidable(f"{prefix}.beneficiary.register_not_supported", country=country)
        register = text(identity.register.name)
        match identity.reason:
            case "number_missing":
                return undecidable(f"{prefix}.beneficiary.number_missing", register=register, country=country)
            case "wrong_length":
                expected = identity.register.digits or 0
                return undecidable(
                    f"{prefix}.beneficiary.wrong_length",
                    register=register,
                    digits=count(identity.digits or 0),
                    expected=count(expected),
                )
            case "check_digit_invalid":
                return undecidable(f"{prefix}.beneficiary.check_digit_invalid", register=register)
            case "establishment_number":
                return undecidable(f"{prefix}.beneficiary.establishment_number", register=register)
            case "personal_identity_number":
                return undecidable(f"{prefix}.beneficiary.personal_identity_number", register=register)
            case "court_unknown":
                return undecidable(f"{prefix}.beneficiary.court_unknown", register=register)
        return undecidable(f"{prefix}.beneficiary.malformed", register=register)

    return check


def required_groups(application: Application, p: InForce) -> tuple[bool, dict[str, Figure]]:
    """Whether every member group of the parameter `required_member_groups` is present, and the
    count per group as figures (triple helix: business, knowledge, public)."""
    present = roles_present(application)
    required = p.texts("required_member_groups")
    return all(present[group] > 0 for group in required), {group: count(present[group]) for group in required}


def roles_present(application: Application) -> dict[str, int]:
    """Members per helix: business, knowledge, public."""
    counts = {"business": 0, "knowledge": 0, "public": 0}
    for member in application.members:
        if member.role in BUSINESS_ROLES:
            counts["business"] += 1
        elif member.role == "knowledge_institution":
            counts["knowledge"] += 1
        elif member.role == "public_actor":
            counts["public"] += 1
    return counts
