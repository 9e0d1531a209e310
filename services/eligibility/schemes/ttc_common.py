"""Criteria shared by the two TTC instruments (seed 002).

Source: the project page "TTC: Grensoverschrijdend netwerken ter bevordering van innovatie bij het
mkb" (Interreg IVA Euregio Maas-Rijn; the page names no publisher), "Ontwerpdatum 30/09/2014",
seed `../shared/seeds/002_be53197c6b0f1ecb.txt`: SMEs in the high-tech sectors of the Euregio
Meuse-Rhine (DE, BE, NL); project budget EUR 4,994,022 of which ERDF EUR 2,497,011 (INTERREG IVA
Euregio Meuse-Rhine 2007-2013).
"""

from __future__ import annotations

from services.eligibility.parameters import InForce
from services.eligibility.schemes.common import (
    Undecidable,
    Verdict,
    beneficiary_check,
    count,
    criterion,
    failed,
    funding_request_check,
    passed,
    text,
)
from shared.events import Application, FundShare


@criterion("applicant_sme", "ttc.applicant")
def applicant_sme(application: Application, p: InForce) -> Verdict:
    """The project serves small and medium-sized enterprises ("innovatie bij het mkb")."""
    sme = application.applicant.is_sme
    if sme is None:
        raise Undecidable("ttc.applicant.sme_unknown")
    return passed("ttc.applicant.sme") if sme else failed("ttc.applicant.not_sme")


@criterion("euregio_location", "ttc.location")
def euregio_location(application: Application, p: InForce) -> Verdict:
    """The applicant is in the Euregio Meuse-Rhine (DE/BE/NL).

    Outside the three countries: failed. A place the document names (Aachen, Hasselt, Maastricht,
    Liège, Eindhoven, Leuven, the German-speaking part of Belgium) in its own country: passed.
    Any other place: the document's list is not exhaustive ("strekt zich uit via"), so a case
    handler decides (not_decidable).
    """
    applicant = application.applicant
    countries = p.texts("programme_countries")
    if applicant.country not in countries:
        return failed("ttc.location.outside_programme_countries", country=text(applicant.country))
    if applicant.region is None:
        raise Undecidable("ttc.location.region_unknown", country=text(applicant.country))
    places = p.mapping("euregio_places")
    place_country = places.get(applicant.region.strip().casefold())
    if place_country is None:
        raise Undecidable("ttc.location.region_not_listed", region=text(applicant.region))
    if place_country != applicant.country:
        return failed("ttc.location.region_country_mismatch", region=text(applicant.region), country=text(applicant.country))
    return passed("ttc.location.euregio", region=text(applicant.region), country=text(applicant.country))


@criterion("high_tech_sector", "ttc.sector")
def high_tech_sector(application: Application, p: InForce) -> Verdict:
    """Life sciences, ICT, energy or high-tech materials."""
    if not application.sectors:
        raise Undecidable("ttc.sector.unknown")
    sectors = set(p.texts("sectors"))
    matching = [s for s in application.sectors if s in sectors]
    if matching:
        return passed("ttc.sector.high_tech", sector=text(matching[0]))
    return failed("ttc.sector.not_high_tech", sectors=count(len(application.sectors)))


beneficiary = criterion("beneficiary", "ttc.beneficiary")(beneficiary_check("ttc"))
"""The company that receives the voucher or grant, identified in its register (KBO/BCE, KVK or
Handelsregister: the Euregio spans Belgium, the Netherlands and Germany)."""

funding_request = criterion("funding_request", "ttc.funding")(funding_request_check("ttc"))
"""The amount requested per budget year, in EUR."""


def fund_shares(p: InForce) -> list[FundShare]:
    """ERDF and co-financing in the proportion of the project budget: ERDF EUR 2,497,011 of
    EUR 4,994,022; the co-financing share is the rest. Kept unreduced, as the dated figures."""
    whole = p.money("project_budget_total").amount_minor
    erdf = p.money("erdf_contribution").amount_minor
    return [
        FundShare(fund="erdf", numerator=erdf, denominator=whole),
        FundShare(fund="co-financing", numerator=whole - erdf, denominator=whole),
    ]
