"""The engine itself: outcome precedence, every criterion listed, purity, and the contract."""

from __future__ import annotations

import ast
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.eligibility.domain import evaluate, outcome_of
from services.eligibility.parameters import OperatorParameters, ParameterStore
from shared.events import Application, CriterionResult, EligibilityDecided, Recipient
from tests.unit.eligibility.cases import all_cases, load_cases

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]
STORE = ParameterStore.load()
PURE_FILES = [
    ROOT / "services/eligibility/domain.py",
    *sorted((ROOT / "services/eligibility/parameters").glob("*.py")),
    ROOT / "services/eligibility/competition.py",
    ROOT / "services/eligibility/whatif.py",
    *sorted((ROOT / "services/eligibility/schemes").rglob("*.py")),
]


def result(outcome: str) -> CriterionResult:
    # (ignore below) outcome is one of the Literal's
    return CriterionResult(criterion="c", outcome=outcome, message_key="k")  # type: ignore[arg-type]


def test_failed_beats_not_decidable_beats_passed() -> None:
    assert outcome_of([result("passed"), result("not_decidable"), result("failed")]) == "ineligible"
    assert outcome_of([result("not_decidable"), result("passed")]) == "needs_review"
    assert outcome_of([result("passed"), result("passed")]) == "eligible"


@pytest.mark.parametrize("path", PURE_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_rules_are_pure(path: Path) -> None:
    """No I/O framework, no logging, no clock in the rules engine."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
        elif isinstance(node, ast.Attribute) and node.attr in {"now", "today", "utcnow", "time"}:
            pytest.fail(f"{path.name}:{node.lineno} reads the clock ({node.attr})")
    assert not imported & {"asyncpg", "faststream", "structlog", "aiokafka", "time", "random", "socket", "httpx"}


def test_every_decision_fits_the_event_contract() -> None:
    """Decisions become valid EligibilityDecided events (criteria are built without re-validation)."""
    for case in all_cases():
        store = STORE.with_operator(OperatorParameters.from_mapping(case.operator))
        decision = evaluate(case.application, store)
        app = case.application
        event = EligibilityDecided(
            application_id=app.application_id,
            scheme=app.scheme,
            decided_at=datetime(2026, 1, 1, tzinfo=UTC),
            reference_date=decision.reference_date,
            time_zone=decision.time_zone,
            outcome=decision.outcome,
            parameter_version=decision.parameter_version,
            criteria=decision.criteria,
            proposed_grant=decision.proposed_grant,
            recipient=Recipient(language=app.language, contact=app.contact, organisation_name="x"),
            beneficiary_id=decision.beneficiary_id,
        )
        again = EligibilityDecided.model_validate_json(event.model_dump_json())
        assert again == event, case.source


def test_evaluation_is_deterministic() -> None:
    for case in load_cases("s3.financing"):
        store = STORE.with_operator(OperatorParameters.from_mapping(case.operator))
        assert evaluate(case.application, store) == evaluate(case.application, store)


BASE = next(c for c in load_cases("vlaio.spearhead-cluster") if c.name.startswith("eligible at exactly")).application
BASE_STORE = STORE.with_operator(OperatorParameters.from_mapping({"vlaio": {"recognised_spearhead_clusters": ["0700.000.005"]}}))


def with_one_year(costs: int, requested: int) -> Application:
    data = BASE.model_dump()
    data["funding"]["years"] = [
        {
            "year": 2019,
            "eligible_costs": {"amount_minor": costs, "currency": "EUR"},
            "requested": {"amount_minor": requested, "currency": "EUR"},
        }
    ]
    return Application.model_validate(data)


@settings(max_examples=300, deadline=None)
@given(costs=st.integers(0, 200_000_000), requested=st.integers(0, 100_000_000))
def test_vlaio_coordination_grant_matches_the_rule(costs: int, requested: int) -> None:
    """Always eligible; granted min(requested, floor(50 % of costs), EUR 500,000), naming the cap that bound."""
    decision = evaluate(with_one_year(costs, requested), BASE_STORE)
    assert decision.outcome == "eligible"
    assert decision.proposed_grant is not None
    [slice_] = decision.proposed_grant.schedule
    share, ceiling = costs // 2, 50_000_000
    assert slice_.amount.amount_minor == min(requested, share, ceiling)
    assert slice_.requested is not None and slice_.requested.amount_minor == requested
    expected = None if requested <= min(share, ceiling) else "yearly_ceiling" if ceiling < share else "coordination_share"
    assert slice_.limited_by == expected
    keys = {c.criterion: c.message_key for c in decision.criteria}
    assert (keys["coordination_share"] == "vlaio.coordination.share_applied") == (requested > share)
    assert (keys["yearly_ceiling"] == "vlaio.coordination.ceiling_applied") == (min(requested, share) > ceiling)


def test_the_decision_event_names_the_beneficiary_by_its_register_identity() -> None:
    from services.eligibility.handlers import decide
    from shared.events import ApplicationReceived

    case = next(c for c in load_cases("vlaio.spearhead-cluster") if c.name.startswith("recognised by register number"))
    received = ApplicationReceived(
        application_id=case.application.application_id,
        received_at=datetime(2019, 3, 1, tzinfo=UTC),
        channel="http",
        application=case.application,
    )
    event = decide(received, STORE.with_operator(OperatorParameters.from_mapping(case.operator)))
    assert event.outcome == "eligible"
    assert event.beneficiary_id == "BE-BCE_KBO-0700000005"
    assert event.proposed_grant is not None and event.proposed_grant.beneficiary_id == "BE-BCE_KBO-0700000005"
    assert EligibilityDecided.model_validate_json(event.model_dump_json()).beneficiary_id == event.beneficiary_id
