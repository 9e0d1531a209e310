"""Competitive calls, the pure part: rank eligible applications by assessors' scores, select a cap.

A competitive scheme declares its assessment in its folder (`RULES.assessment`: the criteria and
the operator key of its cap): S3 step 1 (`schemes/s3_platform`, seed 003: Tillväxtverket selects
20-25 cluster organisations "i konkurrens" on seven criteria), Norway (`schemes/nic_cluster`, seed
004: five aspects; the cap is not in the document).

Scoring: each criterion may have several assessors; a criterion's score is the mean of its
assessors' scores (an exact Fraction), the total is the sum over the criteria. Scores are whole
non-negative numbers; a float is refused.

Tie rule (deterministic, total order): total score descending, then earliest `submitted_at`
(compared as instants), then `application_id` ascending.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction
from typing import Final

from services.eligibility.parameters import ParameterStore
from services.eligibility.schemes import SCHEMES
from services.eligibility.schemes.common import Assessment
from shared.events import Application

ASSESSMENTS: Final[Mapping[str, Assessment]] = {
    scheme: rules.assessment for scheme, rules in SCHEMES.items() if rules.assessment is not None
}
"""The competitive schemes and their assessment, as their folders declare them."""

S3_CRITERIA: Final = ASSESSMENTS["s3.platform"].criteria
"""The seven selection criteria of the S3 pilot, in the order of seed 003."""

NIC_ASPECTS: Final = ASSESSMENTS["nic.cluster"].criteria
"""The assessment aspects of Norwegian Innovation Clusters (seed 004)."""


@dataclass(frozen=True, slots=True)
class Candidate:
    """An eligible application with its assessors' scores: criterion -> one score per assessor."""

    application_id: str
    submitted_at: datetime
    scores: Mapping[str, Sequence[int]]

    @classmethod
    def of(cls, application: Application, scores: Mapping[str, Sequence[int]]) -> Candidate:
        return cls(application.application_id, application.submitted_at, scores)


@dataclass(frozen=True, slots=True)
class Ranked:
    application_id: str
    rank: int
    total: Fraction
    selected: bool


def total_score(candidate: Candidate, criteria: Sequence[str]) -> Fraction:
    """Sum over `criteria` of the mean of the assessors' scores; every criterion must be scored."""
    unknown = set(candidate.scores) - set(criteria)
    if unknown:
        raise ValueError(f"{candidate.application_id}: unknown criteria {sorted(unknown)}")
    total = Fraction(0)
    for name in criteria:
        scores = candidate.scores.get(name)
        if not scores:
            raise ValueError(f"{candidate.application_id}: criterion {name!r} has no score")
        for score in scores:
            if isinstance(score, bool) or not isinstance(score, int) or score < 0:
                raise ValueError(f"{candidate.application_id}: score {score!r} for {name!r} is not a whole number >= 0")
        total += Fraction(sum(scores), len(scores))
    return total


def rank_and_select(candidates: Sequence[Candidate], criteria: Sequence[str], cap: int) -> list[Ranked]:
    """All candidates ranked (best first); the first `cap` are selected. See the module's tie rule."""
    if isinstance(cap, bool) or not isinstance(cap, int) or cap < 0:
        raise ValueError(f"cap must be a whole number >= 0, got {cap!r}")
    ids = [c.application_id for c in candidates]
    if len(set(ids)) != len(ids):
        raise ValueError("each application may be a candidate only once")
    totals = {c.application_id: total_score(c, criteria) for c in candidates}
    ordered = sorted(candidates, key=lambda c: (-totals[c.application_id], c.submitted_at, c.application_id))
    return [
        Ranked(application_id=c.application_id, rank=i + 1, total=totals[c.application_id], selected=i < cap)
        for i, c in enumerate(ordered)
    ]


def selection_cap(parameters: ParameterStore, scheme: str) -> int:
    """The operator-set cap of a competitive scheme; raises `OperatorParameterUnset` if unset."""
    return parameters.operator.get(ASSESSMENTS[scheme].cap)
