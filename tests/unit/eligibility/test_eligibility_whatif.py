"""What-if: the same applications under current and proposed parameters."""

from __future__ import annotations

from datetime import date

import pytest
import yaml

from services.eligibility.parameters import OperatorParameters, ParameterStore, SchemeParameters
from services.eligibility.schemes import scheme_dir
from services.eligibility.whatif import what_if
from shared.money import Money
from tests.unit.eligibility.cases import Case, load_cases

pytestmark = pytest.mark.unit

STORE = ParameterStore.load()


def case(scheme: str, name: str) -> Case:
    return next(c for c in load_cases(scheme) if c.name == name)


def test_same_parameters_change_nothing() -> None:
    apps = [c.application for c in load_cases("vlaio.business-network")]
    results = what_if(apps, STORE, STORE)
    assert [r.application_id for r in results] == [a.application_id for a in apps]
    assert not any(r.changed for r in results)


def test_operator_setting_nic_amounts_turns_review_into_a_decision() -> None:
    c = case("nic.cluster", "amounts per level not yet set by the operator, a case handler decides")
    current = STORE.with_operator(OperatorParameters.from_mapping(c.operator))

    def setting(yearly_maximum: int) -> ParameterStore:
        levels = {"arena": {"yearly_maximum_nok": yearly_maximum, "max_years": 3}}
        return STORE.with_operator(OperatorParameters.from_mapping({"nic": {**c.operator["nic"], "levels": levels}}))

    # 2,000,000 and 1,500,000 NOK requested: a maximum of 2,000,000 allows it, one krone less does not
    [enough] = what_if([c.application], current, setting(2_000_000))
    [too_low] = what_if([c.application], current, setting(1_999_999))
    assert (enough.outcome_before, enough.outcome_after) == ("needs_review", "eligible")
    assert enough.total_before is None
    assert enough.schedule_after == ((2025, 200_000_000), (2026, 150_000_000))
    assert enough.total_after == Money.of_major(3_500_000, "NOK")
    assert {ch.criterion for ch in enough.criteria_changed} == {"yearly_maximum", "duration"}
    assert enough.changed
    assert enough.version_before != enough.version_after
    assert (too_low.outcome_before, too_low.outcome_after) == ("needs_review", "ineligible")
    assert too_low.total_after is None


def test_a_new_dated_ceiling_changes_the_outcome_from_its_date() -> None:
    """A proposed rule change is a new dated value: applications before its date keep the old one."""
    raw = yaml.safe_load((scheme_dir("vlaio.business-network") / "parameters.yaml").read_text(encoding="utf-8"))
    raw["parameters"]["yearly_ceiling"]["values"][date(2018, 9, 1)] = {"value": 100000}
    proposed = STORE.with_scheme(SchemeParameters.from_mapping(raw, source="proposal.yaml"))
    c = case("vlaio.business-network", "eligible, three years, first year at exactly the EUR 150,000 ceiling")
    after_change = c.application  # submitted 14 September 2018, requests EUR 150,000 for 2018
    before_change = c.application.model_copy(update={"submitted_at": c.application.submitted_at.replace(month=8)})
    changed, unchanged = what_if([after_change, before_change], STORE, proposed)
    # 000 caps what is granted: the lower ceiling cuts 2018's EUR 150,000 and 2019's EUR 120,000 to EUR 100,000
    assert (changed.outcome_before, changed.outcome_after) == ("eligible", "eligible")
    assert [(ch.criterion, ch.after_key) for ch in changed.criteria_changed] == [
        ("yearly_ceiling", "vlaio.coordination.ceiling_applied")
    ]
    assert changed.total_before == Money.of_major(320_000, "EUR")
    assert changed.total_after == Money.of_major(250_000, "EUR")
    assert changed.schedule_after == ((2018, 10_000_000), (2019, 10_000_000), (2020, 5_000_000))
    assert unchanged.outcome_after == "eligible"
    assert not unchanged.changed
