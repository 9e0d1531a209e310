"""VLAIO cluster pact: earmarked resources from the Hermes fund.

Source: VLAIO (Agentschap Innoveren & Ondernemen), "Het clusterpact" (the page carries no date),
seed `../shared/seeds/001_2aac08539ee69503.txt`: the pact of a spearhead
cluster is negotiated in the first year after the decision to support it; its key element is the
earmark from the Hermes fund, "een voorwaardelijk engagement ... voor drie jaar" with "het maximum
bedrag ... jaarlijks bepaald". The yearly maximum is the operator key
`vlaio.hermes_yearly_maximum_eur` (per budget year); a year without one is not decidable.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date

from services.eligibility.parameters import InForce, LimitReading, OperatorKey
from services.eligibility.parameters.operator_file import money_of, yearly
from services.eligibility.registers import Identified
from services.eligibility.schemes.common import (
    Line,
    SchemeRules,
    Undecidable,
    Verdict,
    beneficiary_of,
    cap_each_year,
    cap_years,
    count,
    criterion,
    day,
    failed,
    first_cut,
    funding_of,
    funding_request_check,
    grant,
    lines_of,
    money,
    passed,
    single_fund,
    text,
    undecidable,
    year_span,
    years,
)
from services.eligibility.schemes.vlaio_common import (
    RECOGNISED_SPEARHEAD_CLUSTERS,
    beneficiary,
    cluster_organisation,
    recognised_cluster,
)
from shared.events import Application, FundingRequest, ProposedGrant
from shared.money import Money

HERMES_MAXIMUM: OperatorKey[Mapping[int, Money]] = OperatorKey(
    "vlaio.hermes_yearly_maximum_eur",
    yearly(money_of("EUR")),
    "Cluster pact: maximum Hermes earmark per budget year, EUR (001: 'jaarlijks bepaald').",
    limit=LimitReading(
        kind="granted",
        quote={
            "nl": "Het maximum bedrag aan geoormerkt middelen wordt jaarlijks bepaald.",
            "en": "The maximum amount of earmarked resources is set every year.",
        },
        reading="The maximum bounds what is earmarked, not what may be asked: a year asking more is eligible and "
        "earmarked that year's maximum; the decision says the cap applied.",
    ),
)


@criterion("recognised_spearhead_cluster", "vlaio.pact")
def recognised_spearhead_cluster(application: Application, p: InForce) -> Verdict:
    """A cluster pact belongs to a spearhead cluster the agency decided to support (operator list,
    by register number; without a valid number: not decidable)."""
    organisation = text(application.applicant.organisation_name)
    identity = beneficiary_of(application)
    if not isinstance(identity, Identified):
        return undecidable("vlaio.pact.identity_unknown", organisation=organisation)
    figures = {"organisation": organisation, "beneficiary": text(identity.org_id)}
    if recognised_cluster(identity.org_id, p):
        return passed("vlaio.pact.spearhead_recognised", **figures)
    return failed("vlaio.pact.not_spearhead_cluster", **figures)


def _anniversary(start: date, years_: int) -> date:
    try:
        return start.replace(year=start.year + years_)
    except ValueError:  # 29 February -> 1 March
        return date(start.year + years_, 3, 1)


@criterion("negotiation_window", "vlaio.pact")
def negotiation_window(application: Application, p: InForce) -> Verdict:
    """Negotiated in the first year after the support decision: decision day <= submission day < first anniversary."""
    decided = application.cluster_support_decided_on
    if decided is None:
        raise Undecidable("vlaio.pact.support_decision_unknown")
    window_ends = _anniversary(decided, p.integer("negotiation_window_years"))
    figures = {"support_decided_on": day(decided), "window_ends": day(window_ends), "reference_date": day(p.on)}
    if p.on < decided:
        return failed("vlaio.pact.before_support_decision", **figures)
    if p.on >= window_ends:
        return failed("vlaio.pact.negotiation_window_passed", **figures)
    return passed("vlaio.pact.within_negotiation_window", **figures)


funding_request = criterion("funding_request", "vlaio.pact.funding")(funding_request_check("vlaio.pact"))
"""The earmark requested per budget year, in EUR."""


def _years_committed(funding: FundingRequest, p: InForce) -> tuple[list[Line], list[Line]]:
    return cap_years(lines_of(funding), "commitment_years", p.integer("commitment_years"))


@criterion("commitment_years", "vlaio.pact")
def commitment_years(application: Application, p: InForce) -> Verdict:
    """The commitment is taken for three budget years ("een voorwaardelijk engagement ... voor drie
    jaar"): a longer request is earmarked for its first three years, and the decision says so."""
    funding = funding_of(application, p, "vlaio.pact")
    limit, span = p.integer("commitment_years"), year_span(funding)
    if span <= limit:
        return passed("vlaio.pact.commitment_within_limit", requested=years(span), limit=years(limit))
    kept, dropped = _years_committed(funding, p)
    return passed(
        "vlaio.pact.commitment_cap_applied",
        requested=years(span),
        limit=years(limit),
        last_year=count(kept[-1].year),
        not_granted=count(len(dropped)),
    )


def _maxima(p: InForce) -> Mapping[int, Money]:
    return p.op(HERMES_MAXIMUM)


def _earmark_lines(funding: FundingRequest, p: InForce) -> tuple[list[Line], list[Line]]:
    """(earmarked, not earmarked): per committed year min(requested, that year's maximum); a committed
    year without a maximum is not decidable."""
    kept, dropped = _years_committed(funding, p)
    maxima = _maxima(p)
    unset = [line.year for line in kept if line.year not in maxima]
    if unset:
        raise Undecidable("vlaio.pact.yearly_maximum_unset", budget_year=count(unset[0]))
    return cap_each_year(kept, HERMES_MAXIMUM.key, lambda line: maxima[line.year]), dropped


@criterion("hermes_yearly_maximum", "vlaio.pact")
def hermes_yearly_maximum(application: Application, p: InForce) -> Verdict:
    """Each year's earmark is at most that year's maximum, which the agency sets every year ("Het
    maximum bedrag aan geoormerkt middelen wordt jaarlijks bepaald"): a year asking more is earmarked
    the maximum, and the decision says the cap applied."""
    funding = funding_of(application, p, "vlaio.pact")
    kept, _ = _earmark_lines(funding, p)
    cut = first_cut(kept, HERMES_MAXIMUM.key)
    if cut is None:
        return passed("vlaio.pact.within_yearly_maximum")
    return passed(
        "vlaio.pact.yearly_maximum_applied",
        budget_year=count(cut.year),
        requested=money(cut.requested),
        limit=money(cut.granted),
    )


def propose(application: Application, p: InForce) -> ProposedGrant:
    """A conditional Hermes earmark per committed budget year: min(requested, that year's maximum)."""
    kept, dropped = _earmark_lines(funding_of(application, p, "vlaio.pact"), p)
    return grant(p, "hermes-earmark", kept, single_fund("hermes"), conditional=True, not_granted=dropped)


RULES = SchemeRules(
    scheme="vlaio.cluster-pact",
    criteria=(
        recognised_spearhead_cluster,
        cluster_organisation,
        beneficiary,
        negotiation_window,
        funding_request,
        commitment_years,
        hermes_yearly_maximum,
    ),
    propose=propose,
    operator_keys=(RECOGNISED_SPEARHEAD_CLUSTERS, HERMES_MAXIMUM),
)
