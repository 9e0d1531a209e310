"""TTC innovation voucher: EUR 5,000 for the very first R&D work of a participating SME.

Source: the project page "TTC: Grensoverschrijdend netwerken ter bevordering van innovatie bij het
mkb" (Interreg IVA Euregio Maas-Rijn; the page names no publisher), "Ontwerpdatum 30/09/2014",
seed `../shared/seeds/002_be53197c6b0f1ecb.txt`: "een
innovatievoucher van 5 000 EUR, die kan worden gebruikt om het allereerste onderzoeks- en
ontwikkelingswerk uit te voeren"; 35 vouchers over the whole project (counted by the budget
service against parameter `vouchers_total`, not here). Every voucher splits into ERDF and
co-financing in the proportion of the project budget.
"""

from __future__ import annotations

from services.eligibility.parameters import InForce
from services.eligibility.schemes.common import (
    SchemeRules,
    Verdict,
    cap_total,
    criterion,
    failed,
    funding_of,
    grant,
    lines_of,
    money,
    passed,
    requested_total,
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

PRIOR_VOUCHER = "ttc-voucher"


@criterion("first_voucher", "ttc.voucher")
def first_voucher(application: Application, p: InForce) -> Verdict:
    """The voucher pays for the very first R&D work: an applicant that already had one ('ttc-voucher'
    in its prior funding) cannot get another."""
    if PRIOR_VOUCHER in application.prior_funding:
        return failed("ttc.voucher.already_received")
    return passed("ttc.voucher.first")


@criterion("voucher_amount", "ttc.voucher")
def voucher_amount(application: Application, p: InForce) -> Verdict:
    """What is given is "een innovatievoucher van 5 000 EUR": a request over all budget years above the
    voucher amount is granted the voucher (EUR 5,000), and the decision says so."""
    funding = funding_of(application, p, "ttc")
    limit, requested = p.money("voucher_amount"), requested_total(funding)
    if requested <= limit:
        return passed("ttc.voucher.within_amount", requested=money(requested), limit=money(limit))
    return passed("ttc.voucher.amount_capped", requested=money(requested), limit=money(limit))


def propose(application: Application, p: InForce) -> ProposedGrant:
    """The voucher per budget year as asked, at most the voucher amount in all (the earliest years
    first), split ERDF / co-financing."""
    funding = funding_of(application, p, "ttc")
    lines = cap_total(lines_of(funding), "voucher_amount", p.money("voucher_amount"))
    return grant(p, "innovation-voucher", lines, fund_shares(p))


RULES = SchemeRules(
    scheme="ttc.innovation-voucher",
    criteria=(
        applicant_sme,
        beneficiary,
        euregio_location,
        high_tech_sector,
        first_voucher,
        funding_request,
        voucher_amount,
    ),
    propose=propose,
)
