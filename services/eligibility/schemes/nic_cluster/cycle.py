"""Norwegian Innovation Clusters' yearly cycle, the pure part: the yearly call per level and the
annual evaluation of a funded cluster.

Source (seed `../shared/seeds/004_353bc3df9124071f.txt`):

* "Søknadsfrist er midten av september hvert år, og nye klynger annonseres én måned senere." Neither
  day is given: both are operator keys per year (`nic.application_deadline`, `nic.announcement_on`);
  a call cannot be opened for a year whose days are unset.
* "Det foretas årlig evaluering av hvorvidt hver enkelt klynge utvikler seg i tråd med strategi og
  målsetting, og hvorvidt de tilfredsstiller kravene til å være en del av programmet." Two questions,
  both answered by a case handler; the cluster continues only if both are yes.
"""

from __future__ import annotations

from datetime import date, datetime, time
from typing import Final, Literal, cast
from zoneinfo import ZoneInfo

from services.eligibility.parameters import OperatorParameterUnset, ParameterStore
from services.eligibility.schemes.nic_cluster.criteria import ANNOUNCEMENT_ON, APPLICATION_DEADLINE, LEVELS
from shared.events import CallOpened, ClusterEvaluated, EligibilityDecided, SchemeId

SCHEME: Final[SchemeId] = "nic.cluster"
Level = Literal["arena", "arena-pro", "gce"]
ZONE = "Europe/Oslo"


class CycleError(ValueError):
    """The call or evaluation cannot be made as asked; the message says why."""


def call_id(level: str, year: int) -> str:
    return f"nic-{level}-{year}"


def yearly_call(parameters: ParameterStore, level: str, year: int, opened_by: str, now: datetime) -> CallOpened:
    """The year's call for `level`: its deadline the end of the operator's September day (Oslo time)."""
    if level not in LEVELS:
        raise CycleError(f"level {level!r} has no call; levels: {', '.join(LEVELS)} (NCE is a brand, not a level)")
    in_force = parameters.in_force(SCHEME, date(year, 1, 1))
    try:
        deadline_day = in_force.op(APPLICATION_DEADLINE).get(year)
        announcement = in_force.op(ANNOUNCEMENT_ON).get(year)
    except OperatorParameterUnset as error:
        raise CycleError(f"operator key {error.key} is not set (the document gives no day)") from None
    if deadline_day is None:
        raise CycleError(f"nic.application_deadline has no day for {year} (the document: mid-September every year)")
    if announcement is None:
        raise CycleError(f"nic.announcement_on has no day for {year} (the document: one month after the deadline)")
    if announcement <= deadline_day:
        raise CycleError(f"announcement {announcement} is not after the deadline {deadline_day}")
    deadline = datetime.combine(deadline_day, time(23, 59, 59), ZoneInfo(ZONE))
    return CallOpened(
        call_id=call_id(level, year),
        scheme=SCHEME,
        level=cast(Level, level),  # checked against LEVELS above
        year=year,
        opened_at=now,
        deadline=deadline,
        announcement_on=announcement,
        time_zone=ZONE,
        opened_by=opened_by,
    )


def evaluation(
    decision: EligibilityDecided,
    year: int,
    *,
    in_line_with_strategy: bool,
    meets_requirements: bool,
    reason: str,
    document_reference: str | None,
    officer: str,
    now: datetime,
) -> ClusterEvaluated:
    """The annual evaluation of the cluster granted by `decision` (its latest, eligible revision)."""
    if decision.scheme != SCHEME:
        raise CycleError(f"{decision.application_id} is a {decision.scheme} application; evaluations are of {SCHEME}")
    grant = decision.proposed_grant
    if decision.outcome != "eligible" or grant is None or decision.beneficiary_id is None:
        raise CycleError(f"{decision.application_id} is not a funded cluster (its decision is {decision.outcome})")
    years = [s.budget_year for s in grant.schedule]
    if not min(years) <= year <= max(years):
        raise CycleError(f"{year} is outside the grant's budget years {min(years)}-{max(years)}")
    return ClusterEvaluated(
        application_id=decision.application_id,
        evaluation_id=f"{decision.application_id}/{year}",
        scheme=SCHEME,
        programme=grant.programme,
        beneficiary_id=decision.beneficiary_id,
        year=year,
        in_line_with_strategy=in_line_with_strategy,
        meets_requirements=meets_requirements,
        continues=in_line_with_strategy and meets_requirements,
        reason=reason,
        document_reference=document_reference,
        decided_by=f"officer:{officer}",
        evaluated_at=now,
        recipient=decision.recipient,
    )
