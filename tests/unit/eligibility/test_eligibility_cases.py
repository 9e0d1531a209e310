"""Runs every scheme's `cases.yaml`: the expected outcome, every criterion, and the grant.

In a case, `expected.criteria` lists the criteria that do NOT pass (with their outcome and,
optionally, message key); every criterion not listed must have passed. A decision must list every
criterion of its scheme, in the scheme's order.
"""

from __future__ import annotations

from fractions import Fraction

import pytest

from services.eligibility.domain import evaluate
from services.eligibility.parameters import OperatorParameters, ParameterStore
from services.eligibility.schemes import SCHEMES
from tests.unit.eligibility.cases import Case, all_cases, money_of

pytestmark = pytest.mark.unit

CASES = list(all_cases())
STORE = ParameterStore.load()


def test_every_scheme_has_cases() -> None:
    schemes_with_cases = {c.scheme for c in CASES}
    assert schemes_with_cases == set(SCHEMES)
    for scheme in SCHEMES:
        outcomes = {c.expected["outcome"] for c in CASES if c.scheme == scheme}
        assert {"eligible", "ineligible", "needs_review"} <= outcomes, f"{scheme} lacks an outcome: {outcomes}"


@pytest.mark.parametrize("case", CASES, ids=[f"{c.scheme}: {c.name}" for c in CASES])
def test_case(case: Case) -> None:
    store = STORE.with_operator(OperatorParameters.from_mapping(case.operator, source=case.source))
    decision = evaluate(case.application, store)
    expected = case.expected
    rules = SCHEMES[case.scheme]

    assert [c.criterion for c in decision.criteria] == [c.id for c in rules.criteria]
    listed = expected.get("criteria") or {}
    unknown = set(listed) - {c.id for c in rules.criteria}
    assert not unknown, f"{case.source}: unknown criteria {unknown}"
    for result in decision.criteria:
        want = listed.get(result.criterion, "passed")
        if isinstance(want, str):
            want = {"outcome": want}
        got = {"outcome": result.outcome, "key": result.message_key}
        assert result.outcome == want["outcome"], f"{result.criterion}: {got} (figures {result.figures})"
        if "key" in want:
            assert result.message_key == want["key"], f"{result.criterion}: {got}"
        for name, value in (want.get("figures") or {}).items():
            figure = result.figures[name]
            if isinstance(value, str) and value[:4] in ("EUR ", "SEK ", "NOK "):
                amount = money_of(value)
                assert (figure.value, figure.currency) == (amount.amount_minor, amount.currency), name
            else:
                assert figure.value == value, f"{result.criterion}.{name}: {figure.value!r} != {value!r}"

    assert decision.outcome == expected["outcome"], [
        (c.criterion, c.outcome, c.message_key) for c in decision.criteria if c.outcome != "passed"
    ]
    if "reference_date" in expected:
        assert decision.reference_date.isoformat() == str(expected["reference_date"])

    grant = decision.proposed_grant
    if "grant" not in expected:
        assert grant is None, f"{case.source}: a grant was proposed but the case expects none: {grant}"
        return
    want_grant = expected["grant"]
    assert grant is not None, f"{case.source}: expected a grant"
    # Every grant names its beneficiary: the schemes that pay money refer an unidentified applicant.
    assert grant.beneficiary_id is not None and grant.beneficiary_id == decision.beneficiary_id, case.source
    schedule = {s.budget_year: s.amount for s in grant.schedule}
    assert schedule == {int(y): money_of(a) for y, a in want_grant["schedule"].items()}
    requested = {y.year: y.requested for y in case.application.funding.years} if case.application.funding else {}
    for slice_ in [*grant.schedule, *grant.not_granted]:
        assert slice_.requested == requested[slice_.budget_year], f"{case.source}: {slice_} does not show what was asked"
    limited_by = {s.budget_year: s.limited_by for s in grant.schedule if s.limited_by}
    assert limited_by == {int(y): name for y, name in (want_grant.get("limited_by") or {}).items()}, case.source
    not_granted = {s.budget_year: s.limited_by for s in grant.not_granted}
    assert not_granted == {int(y): name for y, name in (want_grant.get("not_granted") or {}).items()}, case.source
    assert all(s.amount.amount_minor == 0 for s in grant.not_granted)
    for field in ("programme", "instrument", "currency", "conditional", "beneficiary_id"):
        if field in want_grant:
            assert getattr(grant, field) == want_grant[field], field
    if "fund_shares" in want_grant:
        got_shares = {s.fund: Fraction(s.numerator, s.denominator) for s in grant.fund_shares}
        assert got_shares == {f: Fraction(r) for f, r in want_grant["fund_shares"].items()}
        assert sum(got_shares.values()) == 1
