"""Tillväxtverket S3 pilot, step 1: expression of interest for the shared learning platform.

Source: Tillväxtverket, "Kluster med koppling till smart specialisering – S3-piloten" (the 2018
call; the page carries no date), seed `../shared/seeds/003_2a022b9e52d62383.txt`. Eligibility
only: the selection of 20-25 organisations is competitive, on the seven criteria of `ASSESSMENT`
(ranked by `services/eligibility/competition.py`, capped by `SELECTION_CAP`). No money is given
through this step, so no grant is proposed. A Vinnväxt-funded organisation may join the platform
(the Vinnväxt exclusion applies to step 2 only).
"""

from __future__ import annotations

from services.eligibility.parameters import InForce, OperatorKey, SchemeParameters
from services.eligibility.parameters.operator_file import positive_int
from services.eligibility.schemes.common import (
    Assessment,
    SchemeRules,
    Undecidable,
    Verdict,
    criterion,
    failed,
    no_grant,
    pages,
    passed,
    text,
)
from services.eligibility.schemes.s3_common import cluster_organisation, deadline_verdict, legal_personality
from shared.events import Application


def _within_selection_range(cap: int, scheme: SchemeParameters) -> str | None:
    """The cap must lie within the range the document gives; the operator's cap is not dated, so
    it is checked against the widest range any dated value allows."""
    low_p, high_p = scheme.parameters["selection_count_min"], scheme.parameters["selection_count_max"]
    low = min(v.value for v in low_p.values if isinstance(v.value, int))
    high = max(v.value for v in high_p.values if isinstance(v.value, int))
    if low <= cap <= high:
        return None
    return f"{cap} is outside the range the document gives ({low}-{high}, seed 003)"


SELECTION_CAP: OperatorKey[int] = OperatorKey(
    "s3.platform_selection_cap",
    positive_int,
    "S3 step 1: how many cluster organisations are selected (003: 20-25; validated against that range).",
    check=_within_selection_range,
)

SELECTION_CRITERIA = (
    "region_recommendation_and_priority",
    "established_in_regional_support",
    "companies_needs_central",
    "international_competitiveness_strategy",
    "business_academia_public_actors",
    "sustainability",
    "results_within_two_years",
)
"""The seven selection criteria of the S3 pilot, in the order of seed 003 ("Detta är våra urvalskriterier")."""

ASSESSMENT = Assessment(
    criteria=SELECTION_CRITERIA,
    cap=SELECTION_CAP,
    doc='003: "Tillväxtverket väljer 20–25 klusterorganisationer" and "Vi bedömer ansökningarna i konkurrens '
    'enligt ovanstående kriterier" (in competition, on the seven criteria above).',
)


@criterion("deadline", "s3.deadline")
def deadline(application: Application, p: InForce) -> Verdict:
    """Expression of interest "senast 31 maj 2018", Swedish time: 23:59 on 31 May 2018 in
    Stockholm (21:59 UTC, summer time) is on time, one minute later is late."""
    return deadline_verdict(application, p, p.day("expression_of_interest_deadline"), "s3.deadline")


@criterion("region_recommendation", "s3.recommendation")
def region_recommendation(application: Application, p: InForce) -> Verdict:
    """A recommendation from the region confirming the organisation is prioritised in the regional
    S3 (or equivalent strategy), or on the way to be, with a reference to the strategy."""
    recommendation = application.region_recommendation
    if recommendation is None:
        return failed("s3.recommendation.missing")
    figures = {"region": text(recommendation.region), "status": text(recommendation.status)}
    if recommendation.status in p.texts("accepted_recommendation_statuses"):
        return passed("s3.recommendation.given", **figures)
    return failed("s3.recommendation.not_prioritised", **figures)


@criterion("written_recommendation", "s3.recommendation")
def written_recommendation(application: Application, p: InForce) -> Verdict:
    """The region's written recommendation is attached to the application.

    003: "I ansökan ska även finnas en skriftlig rekommendation från regionen".
    """
    if any(d.kind == "region_recommendation" for d in application.documents):
        return passed("s3.recommendation.document_attached")
    return failed("s3.recommendation.document_missing")


@criterion("page_limit", "s3.application_document")
def page_limit(application: Application, p: InForce) -> Verdict:
    """The application is a document of at most four pages ("max fyra sidor")."""
    documents = [d for d in application.documents if d.kind == "application"]
    if not documents:
        raise Undecidable("s3.application_document.missing")
    used, limit = sum(d.pages for d in documents), p.integer("max_application_pages")
    if used <= limit:
        return passed("s3.application_document.within_page_limit", pages=pages(used), limit=pages(limit))
    return failed("s3.application_document.too_long", pages=pages(used), limit=pages(limit))


RULES = SchemeRules(
    scheme="s3.platform",
    criteria=(
        deadline,
        cluster_organisation,
        legal_personality,
        region_recommendation,
        written_recommendation,
        page_limit,
    ),
    propose=no_grant,
    operator_keys=(SELECTION_CAP,),
    assessment=ASSESSMENT,
)
