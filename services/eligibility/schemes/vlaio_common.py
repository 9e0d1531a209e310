"""Criteria shared by the VLAIO schemes (seeds 000 and 001).

Sources: VLAIO (Agentschap Innoveren & Ondernemen), "Innovatieclusters", last changed 11 June 2020
and marked "Geen aanvraag meer mogelijk" (no application possible any more), seed
`../shared/seeds/000_b8f1635a33d3043b.txt`; and VLAIO, "Het clusterpact" (no date on the page),
seed `../shared/seeds/001_2aac08539ee69503.txt`.
"""

from __future__ import annotations

import re

from services.eligibility.parameters import InForce, OperatorKey
from services.eligibility.registers import Identified, identify, parse_org_id
from services.eligibility.schemes.common import (
    Criterion,
    Line,
    Undecidable,
    Verdict,
    beneficiary_check,
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
    lines_of,
    money,
    passed,
    percent,
    required_groups,
    roles_present,
    share_of,
    text,
    undecidable,
    year_span,
    years,
)
from shared.events import Application, FundingRequest

ORG_ID_FORM = re.compile(r"^[A-Z]{2}-[A-Z]")


def _cluster_identities(value: object) -> frozenset[str]:
    """The recognised clusters by their identity: KBO/BCE enterprise numbers (a spearhead cluster is a
    Flemish cluster organisation), or org-id.guide identifiers such as BE-BCE_KBO-0521749439. A name
    identifies nothing (two organisations may share one, and anyone can type it), so it is refused."""
    if not isinstance(value, list) or not all(isinstance(x, str) and x.strip() for x in value):
        raise ValueError("must be a list of register numbers (KBO/BCE enterprise numbers or org-id.guide identifiers)")
    found: set[str] = set()
    for position, entry in enumerate(value, 1):
        identity = parse_org_id(entry) if ORG_ID_FORM.match(entry.strip()) else identify("BE", entry)
        if not isinstance(identity, Identified):
            raise ValueError(f"entry {position} ({entry!r}) is not a valid register number: {identity.reason.replace('_', ' ')}")
        found.add(identity.org_id)
    return frozenset(found)


RECOGNISED_SPEARHEAD_CLUSTERS: OperatorKey[frozenset[str]] = OperatorKey(
    "vlaio.recognised_spearhead_clusters",
    _cluster_identities,
    "Recognised spearhead clusters, by KBO/BCE enterprise number (or org-id.guide identifier), never by "
    "name: coordination support, the innovation-projects route and the cluster pact are open only to them "
    "(000, 001).",
)
"""The agency's list: 000 speaks of "erkende speerpuntclusters" (recognised spearhead clusters) and
names none; the spearhead-cluster track, the project route and the cluster pact read it."""


def recognised_cluster(org_id: str, p: InForce) -> bool:
    """On the agency's list of recognised spearhead clusters, by identity (raises
    OperatorParameterUnset while the operator has not set the list)."""
    return org_id in p.op(RECOGNISED_SPEARHEAD_CLUSTERS)


@criterion("call_open", "vlaio.call")
def call_open(application: Application, p: InForce) -> Verdict:
    """The call must accept applications on the submission day (Europe/Brussels).

    Dated parameter `accepting_applications`: false from 11 June 2020, the day the page was last
    changed and marked closed. An application dated on or after it is refused as closed.
    """
    state = p.dated("accepting_applications")
    if state.value is True:
        return passed("vlaio.call.open", reference_date=day(p.on))
    return failed("vlaio.call.closed", reference_date=day(p.on), closed_since=day(state.valid_from))


@criterion("cluster_organisation", "vlaio.applicant")
def cluster_organisation(application: Application, p: InForce) -> Verdict:
    """The cluster organisation applies and receives the subsidy.

    000: "Het is de clusterorganisatie die de subsidie ontvangt".
    """
    if application.applicant.is_cluster_organisation:
        return passed("vlaio.applicant.cluster_organisation")
    return failed("vlaio.applicant.not_cluster_organisation")


@criterion("mandated_by_members", "vlaio.mandate")
def mandated_by_members(application: Application, p: InForce) -> Verdict:
    """The member enterprises mandate the cluster organisation.

    000: "Deze groep van ondernemingen mandateert een clusterorganisatie".
    """
    mandated = application.applicant.mandated_by_members
    if mandated is None:
        raise Undecidable("vlaio.mandate.unknown")
    return passed("vlaio.mandate.given") if mandated else failed("vlaio.mandate.missing")


@criterion("enterprise_consortium", "vlaio.consortium")
def enterprise_consortium(application: Application, p: InForce) -> Verdict:
    """For whom: consortia of enterprises (000: "Voor wie - consortia van ondernemingen")."""
    minimum = p.integer("min_enterprise_members")
    enterprises = roles_present(application)["business"]
    figures = {"enterprises": count(enterprises), "minimum": count(minimum)}
    if enterprises >= minimum:
        return passed("vlaio.consortium.enterprises", **figures)
    return failed("vlaio.consortium.too_few_enterprises", **figures)


@criterion("triple_helix", "vlaio.triple_helix")
def triple_helix(application: Application, p: InForce) -> Verdict:
    """Spearhead clusters are large triple-helix initiatives: enterprises, knowledge institutions, government (000)."""
    complete, figures = required_groups(application, p)
    if complete:
        return passed("vlaio.triple_helix.complete", **figures)
    return failed("vlaio.triple_helix.incomplete", **figures)


@criterion("recognised_spearhead_cluster", "vlaio.spearhead")
def recognised_spearhead_cluster(application: Application, p: InForce) -> Verdict:
    """Coordination support goes to recognised spearhead clusters (000: "erkende speerpuntclusters"),
    matched by register number, never by the name the applicant gives.

    The list of recognised clusters is the agency's: operator key `vlaio.recognised_spearhead_clusters`.
    Without a valid register number it cannot be told whether the applicant is on it: not decidable.
    """
    organisation = text(application.applicant.organisation_name)
    identity = beneficiary_of(application)
    if not isinstance(identity, Identified):
        return undecidable("vlaio.spearhead.identity_unknown", organisation=organisation)
    figures = {"organisation": organisation, "beneficiary": text(identity.org_id)}
    if recognised_cluster(identity.org_id, p):
        return passed("vlaio.spearhead.recognised", **figures)
    return failed("vlaio.spearhead.not_recognised", **figures)


beneficiary = criterion("beneficiary", "vlaio.beneficiary")(beneficiary_check("vlaio"))
"""The cluster organisation, which "receives the subsidy", is identified by its KBO/BCE number."""


funding_request = criterion("funding_request", "vlaio.funding")(funding_request_check("vlaio"))
"""The request states the coordination costs and amounts per budget year, in EUR."""


def _years_granted(funding: FundingRequest, p: InForce) -> tuple[list[Line], list[Line]]:
    """(granted, not granted): the budget years from the first requested one, at most `max_years`."""
    return cap_years(lines_of(funding), "max_years", p.integer("max_years"))


def _share_capped(funding: FundingRequest, lines: list[Line], p: InForce) -> list[Line]:
    costs = {y.year: y.eligible_costs for y in funding.years}
    share = p.ratio("coordination_share")
    return cap_each_year(lines, "coordination_share", lambda line: share_of(costs[line.year], share))


def coordination_lines(application: Application, p: InForce) -> tuple[list[Line], list[Line]]:
    """The coordination subsidy as 000 grants it: per budget year min(requested, 50 % of that year's
    eligible costs rounded down to the cent, the yearly ceiling), for at most the track's number of
    budget years counted from the first requested one; later years are not granted. Each cut names
    the limit that made it (the ceiling where it is the lower of the two caps)."""
    funding = funding_of(application, p, "vlaio")
    kept, dropped = _years_granted(funding, p)
    ceiling = p.money("yearly_ceiling")
    return cap_each_year(_share_capped(funding, kept, p), "yearly_ceiling", lambda line: ceiling), dropped


@criterion("duration", "vlaio.duration")
def duration(application: Application, p: InForce) -> Verdict:
    """Support for at most the track's number of budget years (000: "maximum toegekende subsidie ...
    gedurende maximum 10 jaar" / "3 jaar"): a longer request is granted its first years, and the
    decision says the cap applied."""
    funding = funding_of(application, p, "vlaio")
    limit = p.integer("max_years")
    span = year_span(funding)
    if span <= limit:
        return passed("vlaio.duration.within_limit", requested=years(span), limit=years(limit))
    kept, dropped = _years_granted(funding, p)
    return passed(
        "vlaio.duration.cap_applied",
        requested=years(span),
        limit=years(limit),
        last_year=count(kept[-1].year),
        not_granted=count(len(dropped)),
    )


@criterion("coordination_share", "vlaio.coordination")
def coordination_share(application: Application, p: InForce) -> Verdict:
    """The subsidy is 50 % of each year's eligible coordination costs (000: "bedraagt 50%"), rounded
    down to whole cents: a year asking more is granted the 50 %, and the decision says so."""
    funding = funding_of(application, p, "vlaio")
    share = p.ratio("coordination_share")
    kept, _ = _years_granted(funding, p)
    cut = first_cut(_share_capped(funding, kept, p), "coordination_share")
    if cut is None:
        return passed("vlaio.coordination.share_respected", share=percent(share))
    costs = next(y.eligible_costs for y in funding.years if y.year == cut.year)
    return passed(
        "vlaio.coordination.share_applied",
        budget_year=count(cut.year),
        requested=money(cut.requested),
        allowed=money(cut.granted),
        eligible_costs=money(costs),
        share=percent(share),
    )


@criterion("yearly_ceiling", "vlaio.coordination")
def yearly_ceiling(application: Application, p: InForce) -> Verdict:
    """Each year's grant is at most the track's yearly ceiling (000: "maximum toegekende subsidie",
    EUR 500,000 / EUR 150,000 per year): a year asking more is granted the ceiling, and the decision
    says the cap applied."""
    ceiling = p.money("yearly_ceiling")
    kept, _ = coordination_lines(application, p)
    cut = first_cut(kept, "yearly_ceiling")
    if cut is None:
        return passed("vlaio.coordination.within_ceiling", limit=money(ceiling))
    return passed(
        "vlaio.coordination.ceiling_applied",
        budget_year=count(cut.year),
        requested=money(cut.requested),
        limit=money(ceiling),
    )


COORDINATION_CRITERIA: tuple[Criterion, ...] = (
    call_open,
    cluster_organisation,
    beneficiary,
    mandated_by_members,
    enterprise_consortium,
    funding_request,
    duration,
    coordination_share,
    yearly_ceiling,
)
