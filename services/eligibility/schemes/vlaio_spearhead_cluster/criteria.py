"""VLAIO spearhead cluster (speerpuntcluster): coordination subsidy.

Source: VLAIO (Agentschap Innoveren & Ondernemen), "Innovatieclusters", last changed 11 June 2020
and marked "Geen aanvraag meer mogelijk", seed `../shared/seeds/000_b8f1635a33d3043b.txt`:
50 % of cluster-coordination costs, at most EUR 500,000 per year for at most 10 years, for a
recognised, triple-helix spearhead cluster whose cluster organisation the enterprises mandated.
"""

from __future__ import annotations

from services.eligibility.parameters import InForce
from services.eligibility.schemes.common import SchemeRules, grant, single_fund
from services.eligibility.schemes.vlaio_common import (
    COORDINATION_CRITERIA,
    RECOGNISED_SPEARHEAD_CLUSTERS,
    coordination_lines,
    recognised_spearhead_cluster,
    triple_helix,
)
from shared.events import Application, ProposedGrant


def propose(application: Application, p: InForce) -> ProposedGrant:
    """The coordination subsidy per budget year, paid from the agency's cluster budget."""
    granted, not_granted = coordination_lines(application, p)
    return grant(p, "coordination-subsidy", granted, single_fund("agency"), not_granted=not_granted)


RULES = SchemeRules(
    scheme="vlaio.spearhead-cluster",
    criteria=(*COORDINATION_CRITERIA[:5], triple_helix, recognised_spearhead_cluster, *COORDINATION_CRITERIA[5:]),
    propose=propose,
    operator_keys=(RECOGNISED_SPEARHEAD_CLUSTERS,),
)
