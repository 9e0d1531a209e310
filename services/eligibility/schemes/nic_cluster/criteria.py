"""Norwegian Innovation Clusters: admission at level Arena, Arena Pro or GCE.

Source: the programme page "Klyngeprogrammet Norwegian Innovation Clusters" (run by Innovasjon
Norge, Siva and Forskningsrådet; its "Publisert" and "Sist oppdatert" dates are empty), seed
`../shared/seeds/004_353bc3df9124071f.txt`. Cluster status goes to collaborations of
business, knowledge institutions and public development actors, with business "i førersetet" (in
the driver's seat). Three levels: Arena, Arena Pro, GCE; "NCE er ikke lenger et program, men et
merkenavn": an application for NCE is refused as a level. Deadline "midten av september hvert år"
(operator key `nic.application_deadline`, per year). Amounts and durations per level are not in
the document: operator keys `nic.levels.<level>.yearly_maximum_nok` / `.max_years`; until set,
the financial criteria are not decidable (a case handler decides).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Final

from services.eligibility.parameters import InForce, LimitReading, OperatorKey, parse_date
from services.eligibility.parameters.operator_file import money_in, positive_int, yearly
from services.eligibility.schemes.common import (
    BUSINESS_ROLES,
    Assessment,
    SchemeRules,
    Undecidable,
    Verdict,
    at_most,
    beneficiary_check,
    count,
    criterion,
    day,
    failed,
    funding_of,
    grant,
    lines_of,
    local_submission,
    moment,
    money,
    passed,
    required_groups,
    single_fund,
    text,
    year_span,
    years,
)
from shared.events import Application, FundingRequest, ProposedGrant
from shared.money import Money


def _september_day(value: object, what: str) -> date:
    """The document says only "midten av september" (mid-September): the day must be in September."""
    day_ = parse_date(value, what)
    if day_.month != 9:
        raise ValueError(f"{what} {day_.isoformat()} is not in September (the document: mid-September every year)")
    return day_


APPLICATION_DEADLINE: OperatorKey[Mapping[int, date]] = OperatorKey(
    "nic.application_deadline",
    yearly(_september_day),
    "NIC: the exact application deadline per year, a day in September, Europe/Oslo (004: mid-September).",
)
ANNOUNCEMENT_ON: OperatorKey[Mapping[int, date]] = OperatorKey(
    "nic.announcement_on",
    yearly(parse_date),
    'NIC: the day the year\'s new clusters are announced (004: "nye klynger annonseres én måned senere", '
    "one month after the deadline); read by `calls open-call`, never by a criterion.",
)
SELECTION_CAP: OperatorKey[int] = OperatorKey(
    "nic.selection_cap", positive_int, "NIC: how many new clusters a round selects (not in 004)."
)
LEVELS: Final = ("arena", "arena-pro", "gce")
"""The levels of parameter `levels` (004), for which the operator sets amounts and durations; a
test keeps the two in step."""
SILENT: Final = LimitReading(
    kind="request",
    quote={},
    reading="004 states no amount or duration, let alone whether a larger request is cut or refused; nothing in "
    "it lets the programme grant less than asked, so the agency's maximum limits the request: a larger one is "
    "refused (an agency whose call says otherwise changes this reading).",
)
YEARLY_MAXIMUM: Final[Mapping[str, OperatorKey[Money]]] = {
    level: OperatorKey(
        f"nic.levels.{level}.yearly_maximum_nok",
        money_in("NOK"),
        f"NIC level {level}: largest grant per budget year, NOK (not in 004).",
        limit=SILENT,
    )
    for level in LEVELS
}
MAX_YEARS: Final[Mapping[str, OperatorKey[int]]] = {
    level: OperatorKey(
        f"nic.levels.{level}.max_years",
        positive_int,
        f"NIC level {level}: longest support, in budget years (not in 004).",
        limit=SILENT,
    )
    for level in LEVELS
}

ASPECTS = (
    "synergy",
    "value_creation_and_competitiveness",
    "strategic_development_project",
    "broad_participation",
    "active_leadership",
)
"""The assessment aspects of Norwegian Innovation Clusters (004, "Dette legger vi vekt på i søknaden")."""

ASSESSMENT = Assessment(
    criteria=ASPECTS,
    cap=SELECTION_CAP,
    doc='004: "Dette legger vi vekt på i søknaden" (what the assessment weighs); how many a round selects is '
    "not in the document.",
)


@criterion("level", "nic.level")
def level(application: Application, p: InForce) -> Verdict:
    """The level must be Arena, Arena Pro or GCE; NCE is a brand, not a programme level."""
    applied = application.level
    if applied is None:
        raise Undecidable("nic.level.missing")
    if applied in p.texts("brand_only_levels"):
        return failed("nic.level.nce_is_brand_not_programme", level=text(applied))
    if applied in p.texts("levels"):
        return passed("nic.level.valid", level=text(applied))
    return failed("nic.level.unknown", level=text(applied))


beneficiary = criterion("beneficiary", "nic.beneficiary")(beneficiary_check("nic"))
"""The cluster's legal entity, identified by its organisasjonsnummer (Brønnøysundregistrene)."""


@criterion("triple_helix", "nic.composition")
def triple_helix(application: Application, p: InForce) -> Verdict:
    """Business, knowledge institutions and public development actors are all among the members."""
    complete, figures = required_groups(application, p)
    if complete:
        return passed("nic.composition.complete", **figures)
    return failed("nic.composition.incomplete", **figures)


@criterion("business_led", "nic.leadership")
def business_led(application: Application, p: InForce) -> Verdict:
    """Business in the driver's seat: every member marked as leading the cluster is a business actor.
    No member marked as leading: the application does not say, a case handler decides."""
    leaders = [m for m in application.members if m.leads_cluster]
    if not leaders:
        raise Undecidable("nic.leadership.unknown")
    others = [m for m in leaders if m.role not in BUSINESS_ROLES]
    if others:
        return failed("nic.leadership.not_business_led", non_business_leaders=count(len(others)))
    return passed("nic.leadership.business_in_drivers_seat", leaders=count(len(leaders)))


@criterion("deadline", "nic.deadline")
def deadline(application: Application, p: InForce) -> Verdict:
    """On time through the end of that year's operator-set day in September, Europe/Oslo."""
    local = local_submission(application, p)
    last_day = p.op(APPLICATION_DEADLINE).get(local.year)
    if last_day is None:
        raise Undecidable("nic.deadline.unset_for_year", year=count(local.year))
    figures = {"submitted_at": moment(local), "deadline": day(last_day)}
    if local.date() <= last_day:
        return passed("nic.deadline.on_time", **figures)
    return failed("nic.deadline.missed", **figures)


def _level_funding(application: Application, p: InForce) -> tuple[str, FundingRequest] | None:
    if application.funding is None:
        return None
    if application.level is None or application.level not in p.texts("levels"):
        raise Undecidable("nic.funding.level_unknown")
    return application.level, funding_of(application, p, "nic")


def _yearly_maximum(p: InForce, level_: str) -> Money:
    return p.op(YEARLY_MAXIMUM[level_])


@criterion("yearly_maximum", "nic.funding")
def yearly_maximum(application: Application, p: InForce) -> Verdict:
    """Each year's request is at most the level's operator-set yearly maximum, in NOK. Nothing requested: passed."""
    if application.funding is not None and application.funding.currency != p.currency:
        return failed("nic.funding.wrong_currency", currency=text(application.funding.currency))
    found = _level_funding(application, p)
    if found is None:
        return passed("nic.funding.none_requested")
    level_, funding = found
    limit = _yearly_maximum(p, level_)
    for year in sorted(funding.years, key=lambda y: y.year):
        if limit < year.requested:
            return failed(
                "nic.funding.yearly_maximum_exceeded",
                budget_year=count(year.year),
                requested=money(year.requested),
                limit=money(limit),
                level=text(level_),
            )
    return passed("nic.funding.within_yearly_maximum", limit=money(limit), level=text(level_))


@criterion("duration", "nic.funding")
def duration(application: Application, p: InForce) -> Verdict:
    """At most the level's operator-set number of budget years. Nothing requested: passed."""
    found = _level_funding(application, p)
    if found is None:
        return passed("nic.funding.none_requested")
    level_, funding = found
    limit = p.op(MAX_YEARS[level_])
    span = year_span(funding)
    return at_most(span, limit, years, "nic.funding.duration_within_limit", "nic.funding.duration_exceeded")


def propose(application: Application, p: InForce) -> ProposedGrant | None:
    """The request per budget year, as asked (the criteria refuse one above the level's maxima);
    none when nothing is requested."""
    found = _level_funding(application, p)
    if found is None:
        return None
    level_, funding = found
    return grant(p, f"cluster-{level_}", lines_of(funding), single_fund("agency"))


RULES = SchemeRules(
    scheme="nic.cluster",
    criteria=(level, beneficiary, triple_helix, business_led, deadline, yearly_maximum, duration),
    propose=propose,
    operator_keys=(APPLICATION_DEADLINE, ANNOUNCEMENT_ON, SELECTION_CAP, *YEARLY_MAXIMUM.values(), *MAX_YEARS.values()),
    assessment=ASSESSMENT,
)
