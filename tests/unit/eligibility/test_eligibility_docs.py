"""RULES.md is generated from the scheme folders and complete: every criterion with every message key
it can give, every parameter and operator key, every programme and instrument a grant names."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from services.eligibility import rules_doc
from services.eligibility.domain import evaluate
from services.eligibility.parameters import OperatorParameters, ParameterStore
from services.eligibility.rules_doc import UnresolvedKey, criterion_keys
from services.eligibility.schemes import OPERATOR_KEYS, SCHEMES
from services.eligibility.schemes.common import Criterion, Verdict, criterion, failed, passed
from tests.unit.eligibility.cases import all_cases

pytestmark = pytest.mark.unit

RULES_MD = (Path(__file__).resolve().parents[3] / "services/eligibility/RULES.md").read_text(encoding="utf-8")
GENERIC = re.compile(r"\.parameter_not_in_force$")
STORE = ParameterStore.load()


def scheme_section(scheme: str) -> str:
    start = RULES_MD.index(f"### `{scheme}`")
    end = RULES_MD.find("\n### ", start + 1)
    return RULES_MD[start : end if end != -1 else None]


def test_rules_md_is_what_the_generator_writes() -> None:
    assert rules_doc.render() == RULES_MD, "services/eligibility/RULES.md is stale: run `make docs` and commit it"


@pytest.mark.parametrize("scheme", list(SCHEMES))
def test_every_criterion_and_parameter_is_documented(scheme: str) -> None:
    section = scheme_section(scheme)
    for item in SCHEMES[scheme].criteria:
        assert f"| `{item.id}` |" in section, (scheme, item.id)
    for name in STORE.scheme(scheme).parameters:
        assert f"| `{name}` |" in section, (scheme, name)


def test_every_message_key_the_cases_produce_is_listed_for_its_criterion() -> None:
    """The keys read from the code cover what the criteria really give (so none is missing from the page)."""
    listed = {(s, c.id): set(criterion_keys(c)) for s, rules in SCHEMES.items() for c in rules.criteria}
    missing = set()
    for case in all_cases():
        decision = evaluate(case.application, STORE.with_operator(OperatorParameters.from_mapping(case.operator)))
        for result in decision.criteria:
            if not GENERIC.search(result.message_key) and result.message_key not in listed[(case.scheme, result.criterion)]:
                missing.add((case.scheme, result.criterion, result.message_key))
    assert not missing


def test_every_operator_key_is_documented() -> None:
    for key in OPERATOR_KEYS:
        assert f"| `{key}` |" in RULES_MD, key


def test_every_grant_of_the_cases_is_in_the_programmes_table() -> None:
    rows = {row[0]: row for row in rules_doc.PROGRAMMES}
    by_scheme = {scheme: row for names, row in rows.items() for scheme in names.split(", ")}
    assert set(by_scheme) == set(SCHEMES)
    for case in all_cases():
        decision = evaluate(case.application, STORE.with_operator(OperatorParameters.from_mapping(case.operator)))
        grant = decision.proposed_grant
        row = by_scheme[case.scheme]
        if grant is None:
            continue
        assert f"`{grant.programme}`" == row[1], case.source
        assert f"`{grant.instrument}`" in row[2], case.source
        assert ("`conditional: true`" in row[2]) == grant.conditional, case.source


def test_a_key_the_generator_cannot_read_stops_it() -> None:
    key = "x.made.at.run.time"

    @criterion("opaque", "x")
    def opaque(application: object, p: object) -> Verdict:
        return passed(key.upper())  # a key computed at run time cannot be documented

    with pytest.raises(UnresolvedKey, match="opaque"):
        criterion_keys(opaque)


def test_keys_made_by_helpers_and_factories_are_read_with_the_texts_they_are_given() -> None:
    def helper(prefix: str) -> Verdict:
        return failed(f"{prefix}.too_late")

    def factory(prefix: str) -> Criterion:
        def check(application: object, p: object) -> Verdict:
            if application:
                return helper("x.inner")
            return passed(f"{prefix}.fine")

        return criterion("made", prefix)(check)

    helper.__module__ = factory.__module__ = "services.eligibility.schemes.test_double"
    made = factory("x.outer")
    made.check.__module__ = "services.eligibility.schemes.test_double"
    assert criterion_keys(made) == ["x.inner.too_late", "x.outer.fine"]
