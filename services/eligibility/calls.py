"""Competitive calls, the stateful part: record assessors' scores, close a call once.

The ranking itself is `competition.rank_and_select` (pure; tie rule stated there).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from typing import cast

from services.eligibility.competition import ASSESSMENTS, Candidate, rank_and_select, selection_cap
from services.eligibility.parameters import ParameterStore
from shared.db import Connection
from shared.delivery import PoisonMessage, UnitOfWork
from shared.events import Application, AssessmentSubmitted, CallClosed, RankedApplication, SchemeId

CRITERIA: dict[str, tuple[str, ...]] = {scheme: assessment.criteria for scheme, assessment in ASSESSMENTS.items()}
TIE_RULE = "total score descending, then earliest submission time, then application id ascending"


class CallError(Exception):
    """A call cannot be closed as asked (unknown scheme, cap not set...): the message says why."""


async def record_assessment(conn: Connection, assessment: AssessmentSubmitted) -> bool:
    known = {criterion for criteria in CRITERIA.values() for criterion in criteria}
    unknown = sorted(set(assessment.scores) - known)
    if unknown:
        raise PoisonMessage(f"unknown assessment criteria {unknown}; known: {sorted(known)}")
    inserted = await conn.fetchval(
        """INSERT INTO eligibility.assessments (assessment_id, application_id, call_id, assessor_id, scores, submitted_at)
           VALUES ($1, $2, $3, $4, $5, $6)
           ON CONFLICT (application_id, assessor_id) DO UPDATE SET scores = EXCLUDED.scores,
               assessment_id = EXCLUDED.assessment_id, submitted_at = EXCLUDED.submitted_at
           WHERE eligibility.assessments.submitted_at < EXCLUDED.submitted_at
           RETURNING true""",
        assessment.assessment_id,
        assessment.application_id,
        assessment.call_id,
        assessment.assessor_id,
        dict(assessment.scores),
        assessment.submitted_at,
    )
    return bool(inserted)


async def close_call(
    uow: UnitOfWork, parameters: ParameterStore, scheme: str, call_id: str, cap: int | None = None
) -> tuple[CallClosed, bool]:
    """Rank the call's eligible applications and publish the selection; (result, newly closed)."""
    if scheme not in CRITERIA:
        raise CallError(f"{scheme} is not a competitive scheme; competitive: {', '.join(CRITERIA)}")
    conn = uow.conn
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext('call:' || $1))", call_id)
    existing = await conn.fetchval("SELECT result FROM eligibility.calls WHERE call_id = $1", call_id)
    if existing is not None:
        return CallClosed.model_validate(existing), False
    if cap is None:
        try:
            cap = selection_cap(parameters, scheme)
        except LookupError as error:
            raise CallError(f"the selection cap of {scheme} is an operator parameter and is not set: {error}") from None
    rows = await conn.fetch(
        """SELECT a.application FROM eligibility.decisions d JOIN eligibility.applications a USING (application_id)
           WHERE d.scheme = $1 AND a.call_id = $2 AND d.outcome = 'eligible'""",
        scheme,
        call_id,
    )
    applications = [Application.model_validate(r["application"]) for r in rows]
    scores: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for row in await conn.fetch(
        "SELECT application_id, scores FROM eligibility.assessments WHERE call_id = $1 ORDER BY assessor_id", call_id
    ):
        for criterion, score in row["scores"].items():
            scores[row["application_id"]][criterion].append(int(score))
    criteria = CRITERIA[scheme]
    scored = [a for a in applications if all(scores[a.application_id].get(c) for c in criteria)]
    scored_ids = {a.application_id for a in scored}
    unscored = sorted(a.application_id for a in applications if a.application_id not in scored_ids)
    ranked = rank_and_select([Candidate.of(a, scores[a.application_id]) for a in scored], criteria, cap)
    event = CallClosed(
        call_id=call_id,
        scheme=cast(SchemeId, scheme),  # one of CRITERIA's, checked above
        closed_at=datetime.now(UTC),
        cap=cap,
        criteria=list(criteria),
        tie_rule=TIE_RULE,
        unscored=unscored,
        ranking=[
            RankedApplication(application_id=r.application_id, rank=r.rank, total_score=str(r.total), selected=r.selected)
            for r in ranked
        ],
    )
    await conn.execute(
        "INSERT INTO eligibility.calls (call_id, scheme, closed_at, result) VALUES ($1, $2, $3, $4)",
        call_id,
        scheme,
        event.closed_at,
        event.model_dump(mode="json"),
    )
    await uow.publish(event)
    return event, True
