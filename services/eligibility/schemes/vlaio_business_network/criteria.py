"""VLAIO innovative business network (innovatief bedrijfsnetwerk): coordination subsidy.

Source: VLAIO (Agentschap Innoveren & Ondernemen), "Innovatieclusters", last changed 11 June 2020
and marked "Geen aanvraag meer mogelijk", seed `../shared/seeds/000_b8f1635a33d3043b.txt`:
50 % of cluster-coordination costs, at most EUR 150,000 per year for at most 3 years; a smaller
bottom-up network of enterprises, applying through its mandated cluster organisation.
"""

from __future__ import annotations

from services.eligibility.parameters import InForce
from services.eligibility.schemes.common import SchemeRules, grant, single_fund
from services.eligibility.schemes.vlaio_common import COORDINATION_CRITERIA, coordination_lines
from shared.events import Application, ProposedGrant


def propose(application: Application, p: InForce) -> ProposedGrant:
    """The coordination subsidy per budget year, paid from the agency's cluster budget."""
    granted, not_granted = coordination_lines(application, p)
    return grant(p, "coordination-subsidy", granted, single_fund("agency"), not_granted=not_granted)


RULES = SchemeRules(scheme="vlaio.business-network", criteria=COORDINATION_CRITERIA, propose=propose)
