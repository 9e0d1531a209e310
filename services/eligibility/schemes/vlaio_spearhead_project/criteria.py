"""VLAIO innovation projects of spearhead clusters: admissibility on this route.

Source: VLAIO (Agentschap Innoveren & Ondernemen), "Innovatieclusters", last changed 11 June 2020,
seed `../shared/seeds/000_b8f1635a33d3043b.txt`, section "Innovatieprojecten van speerpuntclusters":
projects are submitted *through* the spearhead cluster, as an O&O (research or development),
COOCK, cSBO, ICON or cooperative project. A project not submitted through a recognised spearhead
cluster, or of another type, is not admissible on this route. The amounts follow each project
type's own procedure, which the documents do not give: no grant is proposed here.
"""

from __future__ import annotations

from services.eligibility.parameters import InForce
from services.eligibility.registers import Identified, identify
from services.eligibility.schemes.common import (
    SchemeRules,
    Undecidable,
    Verdict,
    criterion,
    failed,
    no_grant,
    passed,
    text,
    undecidable,
)
from services.eligibility.schemes.vlaio_common import RECOGNISED_SPEARHEAD_CLUSTERS, call_open, recognised_cluster
from shared.events import Application


@criterion("project_type", "vlaio.project")
def project_type(application: Application, p: InForce) -> Verdict:
    """Only the five project types the page names are admissible on this route."""
    kind = application.project_type
    if kind is None:
        raise Undecidable("vlaio.project.type_missing")
    admissible = p.texts("admissible_project_types")
    if kind in admissible:
        return passed("vlaio.project.type_admissible", project_type=text(kind))
    return failed("vlaio.project.type_not_admissible", project_type=text(kind))


@criterion("via_recognised_spearhead_cluster", "vlaio.project")
def via_recognised_spearhead_cluster(application: Application, p: InForce) -> Verdict:
    """The project is submitted through a spearhead cluster the agency recognised (operator list),
    named by its KBO/BCE enterprise number in `via_cluster`: the list is kept by number, so a name
    alone cannot be matched and a case handler identifies the cluster (not decidable)."""
    via = application.via_cluster
    if via is None:
        return failed("vlaio.project.not_via_spearhead_cluster")
    identity = identify("BE", via)
    if not isinstance(identity, Identified):
        return undecidable("vlaio.project.via_cluster_not_identified", via_cluster=text(via))
    if recognised_cluster(identity.org_id, p):
        return passed("vlaio.project.via_recognised_cluster", via_cluster=text(identity.org_id))
    return failed("vlaio.project.cluster_not_recognised", via_cluster=text(identity.org_id))


RULES = SchemeRules(
    scheme="vlaio.spearhead-project",
    criteria=(call_open, project_type, via_recognised_spearhead_cluster),
    propose=no_grant,
    operator_keys=(RECOGNISED_SPEARHEAD_CLUSTERS,),
)
