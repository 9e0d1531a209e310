"""One package per scheme: `parameters.yaml` (dated figures), `criteria.py` (pure criteria and the
grant proposal, exported as `RULES`), `cases.yaml` (cases a scheme officer can read)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Final

from services.eligibility.schemes.common import SchemeRules
from services.eligibility.schemes.nic_cluster.criteria import RULES as NIC_CLUSTER
from services.eligibility.schemes.s3_financing.criteria import RULES as S3_FINANCING
from services.eligibility.schemes.s3_platform.criteria import RULES as S3_PLATFORM
from services.eligibility.schemes.ttc_innovation_fund.criteria import RULES as TTC_INNOVATION_FUND
from services.eligibility.schemes.ttc_innovation_voucher.criteria import RULES as TTC_INNOVATION_VOUCHER
from services.eligibility.schemes.vlaio_business_network.criteria import RULES as VLAIO_BUSINESS_NETWORK
from services.eligibility.schemes.vlaio_cluster_pact.criteria import RULES as VLAIO_CLUSTER_PACT
from services.eligibility.schemes.vlaio_spearhead_cluster.criteria import RULES as VLAIO_SPEARHEAD_CLUSTER
from services.eligibility.schemes.vlaio_spearhead_project.criteria import RULES as VLAIO_SPEARHEAD_PROJECT

SCHEMES: Final[Mapping[str, SchemeRules]] = {
    rules.scheme: rules
    for rules in (
        VLAIO_SPEARHEAD_CLUSTER,
        VLAIO_BUSINESS_NETWORK,
        VLAIO_SPEARHEAD_PROJECT,
        VLAIO_CLUSTER_PACT,
        TTC_INNOVATION_VOUCHER,
        TTC_INNOVATION_FUND,
        S3_PLATFORM,
        S3_FINANCING,
        NIC_CLUSTER,
    )
}
"""Rules per scheme id (the `SchemeId` literal of shared/events.py)."""


def scheme_dir(scheme: str) -> Path:
    """The folder of a scheme: its id with '.' and '-' as '_'."""
    return Path(__file__).parent / scheme.replace(".", "_").replace("-", "_")
