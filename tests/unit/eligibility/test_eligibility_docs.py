"""RULES.md stays in step with the code: every criterion, message key and operator key is there."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from services.eligibility.domain import evaluate
from services.eligibility.parameters import OPERATOR_KEYS, OperatorParameters, ParameterStore
from services.eligibility.schemes import SCHEMES
from tests.unit.eligibility.cases import all_cases

pytestmark = pytest.mark.unit

RULES_MD = (Path(__file__).resolve().parents[3] / "services/eligibility/RULES.md").read_text(encoding="utf-8")
GENERIC = re.compile(r"\.(operator_parameter_unset|parameter_not_in_force)$")


def scheme_section(scheme: str) -> str:
    start = RULES_MD.index(f"### `{scheme}`")
    end = RULES_MD.find("\n### ", start + 1)
    return RULES_MD[start : end if end != -1 else None]


@pytest.mark.parametrize("scheme", list(SCHEMES))
def test_every_criterion_is_documented(scheme: str) -> None:
    section = scheme_section(scheme)
    for criterion in SCHEMES[scheme].criteria:
        assert f"| `{criterion.id}` |" in section, (scheme, criterion.id)


def test_every_message_key_the_cases_produce_is_documented() -> None:
    store = ParameterStore.load()
    missing = set()
    for case in all_cases():
        decision = evaluate(case.application, store.with_operator(OperatorParameters.from_mapping(case.operator)))
        section = scheme_section(case.scheme)
        for result in decision.criteria:
            if not GENERIC.search(result.message_key) and f"`{result.message_key}`" not in section:
                missing.add((case.scheme, result.message_key))
    assert not missing


def test_every_operator_key_is_documented() -> None:
    for key in OPERATOR_KEYS:
        assert f"`{key}`" in RULES_MD, key
