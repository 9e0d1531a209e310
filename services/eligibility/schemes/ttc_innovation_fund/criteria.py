"""TTC cross-border innovation fund (GCS cluster stimulation fund) grant.

Source: the project page "TTC: Grensoverschrijdend netwerken ter bevordering van innovatie bij het
mkb" (Interreg IVA Euregio Maas-Rijn; the page names no publisher), "Ontwerpdatum 30/09/2014",
seed `../shared/seeds/002_be53197c6b0f1ecb.txt`: "subsidies uit
grensoverschrijdende innovatiefondsen van tussen 100 000 EUR en 250 000 EUR ..., die niet hoeven
worden terugbetaald op voorwaarde dat evenredige financiering is verzekerd". The proportion of the
matching funding is not stated: operator key `ttc.innovation_fund_matching_share_percent`. No
secured matching funding at all is a refusal whatever the proportion.
"""

from __future__ import annotations

from fractions import Fraction

from services.eligibility.parameters import InForce, OperatorKey
from services.eligibility.parameters.operator_file import positive_percent
from services.eligibility.schemes.common import (
    SchemeRules,
    Verdict,
    count,
    criterion,
    failed,
    funding_of,
    grant,
    lines_of,
    money,
    passed,
    percent,
    requested_total,
    secured_co_financing,
)
from services.eligibility.schemes.ttc_common import (
    applicant_sme,
    beneficiary,
    euregio_location,
    fund_shares,
    funding_request,
    high_tech_sector,
)
from shared.events import Application, ProposedGrant

MATCHING_SHARE: OperatorKey[Fraction] = OperatorKey(
    "ttc.innovation_fund_matching_share_percent",
    positive_percent,
    "Innovation fund: secured matching funding must reach at least this percent of the grant "
    "(002 says only 'evenredige financiering').",
)


@criterion("cross_border", "ttc.fund")
def cross_border(application: Application, p: InForce) -> Verdict:
    """A cross-border fund: applicant and members together come from at least two programme countries."""
    programme = set(p.texts("programme_countries"))
    countries = {application.applicant.country, *(m.country for m in application.members)} & programme
    minimum = p.integer("min_countries")
    figures = {"countries": count(len(countries)), "minimum": count(minimum)}
    if len(countries) >= minimum:
        return passed("ttc.fund.cross_border", **figures)
    return failed("ttc.fund.not_cross_border", **figures)


@criterion("grant_range", "ttc.fund")
def grant_range(application: Application, p: InForce) -> Verdict:
    """The request, over all budget years, lies between EUR 100,000 and EUR 250,000 inclusive: the range
    qualifies the subsidies one may apply for ("aan te vragen"), so a request outside it is refused."""
    funding = funding_of(application, p, "ttc")
    low, high, requested = p.money("grant_minimum"), p.money("grant_maximum"), requested_total(funding)
    figures = {"requested": money(requested), "minimum": money(low), "limit": money(high)}
    if requested < low:
        return failed("ttc.fund.amount_below_minimum", **figures)
    if high < requested:
        return failed("ttc.fund.amount_above_maximum", **figures)
    return passed("ttc.fund.amount_in_range", **figures)


@criterion("matching_funding", "ttc.fund")
def matching_funding(application: Application, p: InForce) -> Verdict:
    """Non-repayable only where matching funding is secured: secured co-financing >= the
    operator-set share of the requested grant (compared exactly, no rounding)."""
    funding = funding_of(application, p, "ttc")
    secured, requested = secured_co_financing(funding), requested_total(funding)
    if secured.amount_minor == 0:
        return failed("ttc.fund.matching_not_secured", secured=money(secured), requested=money(requested))
    share = p.op(MATCHING_SHARE)
    figures = {"secured": money(secured), "requested": money(requested), "share": percent(share)}
    if secured.amount_minor >= requested.amount_minor * share:
        return passed("ttc.fund.matching_secured", **figures)
    return failed("ttc.fund.matching_insufficient", **figures)


def propose(application: Application, p: InForce) -> ProposedGrant:
    """The requested grant per budget year, split ERDF / co-financing."""
    funding = funding_of(application, p, "ttc")
    return grant(p, "innovation-fund-grant", lines_of(funding), fund_shares(p))


RULES = SchemeRules(
    scheme="ttc.innovation-fund",
    criteria=(
        applicant_sme,
        beneficiary,
        euregio_location,
        high_tech_sector,
        cross_border,
        funding_request,
        grant_range,
        matching_funding,
    ),
    propose=propose,
    operator_keys=(MATCHING_SHARE,),
)
