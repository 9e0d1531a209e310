"""Tillväxtverket S3 pilot, step 2 (autumn 2018): financing for the selected organisations.

Source: Tillväxtverket, "Kluster med koppling till smart specialisering – S3-piloten" (the 2018
call; the page carries no date), seed `../shared/seeds/003_2a022b9e52d62383.txt`: "Högsta belopp att söka är 600 000 kronor
för maximalt två år. Ett krav är medfinansiering på 50 procent."; the pilot runs 2018-2021;
organisations already funded by Vinnova's Vinnväxt programme cannot apply for S3-pilot financing
(the exception overrides the base rule: they may still join the platform). The step-2 deadline
(a separate call) is operator-set: `s3.financing_application_deadline`.
"""

from __future__ import annotations

from datetime import date

from services.eligibility.parameters import InForce, OperatorKey
from services.eligibility.parameters.operator_file import a_date
from services.eligibility.schemes.common import (
    SchemeRules,
    Undecidable,
    Verdict,
    at_most,
    count,
    criterion,
    eligible_costs_total,
    failed,
    funding_of,
    funding_request_check,
    grant,
    lines_of,
    money,
    passed,
    percent,
    requested_total,
    secured_co_financing,
    single_fund,
    text,
    year_span,
    years,
)
from services.eligibility.schemes.s3_common import beneficiary, cluster_organisation, deadline_verdict, legal_personality
from shared.events import Application, ProposedGrant
from shared.money import Money

DEADLINE: OperatorKey[date] = OperatorKey(
    "s3.financing_application_deadline",
    a_date,
    "S3 step 2 (autumn 2018, separate call): last day to apply, Europe/Stockholm (not in 003).",
)


@criterion("deadline", "s3.financing.deadline")
def deadline(application: Application, p: InForce) -> Verdict:
    """On time through the end of the operator-set day, Europe/Stockholm."""
    return deadline_verdict(application, p, p.op(DEADLINE), "s3.financing.deadline")


@criterion("selected_for_platform", "s3.financing")
def selected_for_platform(application: Application, p: InForce) -> Verdict:
    """Only organisations selected for the platform in step 1 ("de utvalda klusterorganisationerna").
    This reads the portal's claim; the eligibility service replaces it with the project's own step-1
    result (`selection.py`): a claim alone never passes."""
    required = str(p.value("required_selection"))
    if application.selected_for is None:
        raise Undecidable("s3.financing.selection_unknown")
    if required in application.selected_for:
        return passed("s3.financing.selected", selection=text(required))
    return failed("s3.financing.not_selected", selection=text(required))


@criterion("not_vinnvaxt_funded", "s3.financing")
def not_vinnvaxt_funded(application: Application, p: InForce) -> Verdict:
    """Exclusion: already funded by Vinnova's Vinnväxt programme -> no S3-pilot financing."""
    excluded = [code for code in application.prior_funding if code in p.texts("excluded_prior_funding")]
    if excluded:
        return failed("s3.financing.vinnvaxt_funded", programme=text(excluded[0]))
    return passed("s3.financing.no_excluded_funding")


funding_request = criterion("funding_request", "s3.financing.funding")(funding_request_check("s3.financing"))
"""Amounts and eligible costs per budget year, in SEK."""


@criterion("max_amount", "s3.financing")
def max_amount(application: Application, p: InForce) -> Verdict:
    """At most SEK 600,000 in total: "Högsta belopp att söka" is the most one may apply for, so a
    larger request is refused, not cut."""
    funding = funding_of(application, p, "s3.financing")
    limit, requested = p.money("max_amount"), requested_total(funding)
    return at_most(requested, limit, money, "s3.financing.amount_within_limit", "s3.financing.amount_exceeded")


@criterion("duration", "s3.financing")
def duration(application: Application, p: InForce) -> Verdict:
    """At most two budget years ("för maximalt två år", of the amount one may apply for): a longer
    request is refused."""
    funding = funding_of(application, p, "s3.financing")
    limit, span = p.integer("max_years"), year_span(funding)
    return at_most(span, limit, years, "s3.financing.duration_within_limit", "s3.financing.duration_exceeded")


@criterion("pilot_period", "s3.financing")
def pilot_period(application: Application, p: InForce) -> Verdict:
    """Every budget year lies within the pilot, 2018-2021."""
    funding = funding_of(application, p, "s3.financing")
    first, last = p.integer("pilot_first_year"), p.integer("pilot_last_year")
    outside = [y.year for y in funding.years if not first <= y.year <= last]
    figures = {"first_year": count(first), "last_year": count(last)}
    if outside:
        return failed("s3.financing.outside_pilot_period", budget_year=count(outside[0]), **figures)
    return passed("s3.financing.within_pilot_period", **figures)


@criterion("co_financing", "s3.financing")
def co_financing(application: Application, p: InForce) -> Verdict:
    """Secured co-financing covers at least 50 % of the project's eligible costs (the required
    amount is rounded UP to whole öre: 50 % of an odd number of öre needs the next whole öre)."""
    funding = funding_of(application, p, "s3.financing")
    share = p.ratio("co_financing_share")
    costs = eligible_costs_total(funding)
    secured = secured_co_financing(funding)
    required_minor = -(-costs.amount_minor * share.numerator // share.denominator)
    required = Money(amount_minor=required_minor, currency=costs.currency)
    figures = {
        "secured": money(secured),
        "required": money(required),
        "eligible_costs": money(costs),
        "share": percent(share),
    }
    if required <= secured:
        return passed("s3.financing.co_financing_sufficient", **figures)
    return failed("s3.financing.co_financing_insufficient", **figures)


def propose(application: Application, p: InForce) -> ProposedGrant:
    """The requested amount per budget year (the criteria bound the total to SEK 600,000)."""
    funding = funding_of(application, p, "s3.financing")
    return grant(p, "s3-pilot-financing", lines_of(funding), single_fund("agency"))


RULES = SchemeRules(
    scheme="s3.financing",
    criteria=(
        deadline,
        selected_for_platform,
        not_vinnvaxt_funded,
        cluster_organisation,
        legal_personality,
        beneficiary,
        funding_request,
        max_amount,
        duration,
        pilot_period,
        co_financing,
    ),
    propose=propose,
    operator_keys=(DEADLINE,),
)
