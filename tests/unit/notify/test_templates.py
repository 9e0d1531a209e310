"""Every message key any scheme (or the budget, or intake) can send has text in all six languages,
and every decision the schemes' cases produce renders without a single fallback."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import get_args

import pytest
import yaml

from services.eligibility.domain import evaluate
from services.eligibility.parameters import OperatorParameters, ParameterStore
from services.eligibility.schemes import SCHEMES, scheme_dir
from services.notify.i18n import LANGUAGES, TEMPLATES, Catalog, Formatter, locale_for, placeholders
from services.notify.render import explain, render_email
from shared.events import Contact, EligibilityDecided, Recipient, SchemeId
from tests.unit.eligibility.cases import Case, load_cases
from tests.unit.notify.message_keys import (
    INTAKE_OWN_TYPES,
    INTAKE_PYDANTIC_TYPES,
    budget_keys,
    scan_schemes,
)

pytestmark = pytest.mark.unit

CATALOG = Catalog.load()
SCAN = scan_schemes()


def cases() -> list[Case]:
    found = []
    for scheme in SCHEMES:
        if (scheme_dir(scheme) / "cases.yaml").exists():
            found += list(load_cases(scheme))
    return found


CASES = cases()
STORE = ParameterStore.load()


def test_the_scan_finds_keys_for_every_scheme_and_resolves_every_emitter() -> None:
    assert not SCAN.unresolved, "message keys the scan cannot resolve (extend message_keys.py):\n" + "\n".join(SCAN.unresolved)
    assert len(SCAN.keys) >= 50, f"only {len(SCAN.keys)} message keys found: is the scan looking in the right place?"
    prefixes = {key.split(".")[0] for key in SCAN.keys}
    assert {s.split(".")[0] for s in SCHEMES} <= prefixes, f"schemes without keys: {prefixes}"
    assert CASES, "no scheme cases found: the cross-check against emitted keys would prove nothing"


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_scheme_key_has_text(language: str) -> None:
    missing = [
        f"{key} ({where})"
        for key, where in sorted({**SCAN.keys, **SCAN.patterns}.items())
        if CATALOG.lookup(language, "messages", key) is None
    ]
    assert not missing, f"templates/{language}.yaml lacks texts for:\n" + "\n".join(missing)


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_budget_refusal_key_has_text(language: str) -> None:
    keys = budget_keys()
    assert keys, "no budget.* message keys found in services/budget"
    missing = sorted(k for k in keys if CATALOG.lookup(language, "messages", k) is None)
    assert not missing, f"templates/{language}.yaml lacks {missing}"


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_intake_error_type_has_text(language: str) -> None:
    for error_type in (*INTAKE_OWN_TYPES, *INTAKE_PYDANTIC_TYPES, "*"):
        assert CATALOG.lookup(language, "intake_errors", error_type) is not None, f"{language}: {error_type}"


@pytest.mark.parametrize("language", [lang for lang in LANGUAGES if lang != "en"])
def test_translations_have_every_layout_text_and_no_unknown_placeholder(language: str) -> None:
    english = yaml.safe_load((TEMPLATES / "en.yaml").read_text(encoding="utf-8"))
    other = yaml.safe_load((TEMPLATES / f"{language}.yaml").read_text(encoding="utf-8"))
    for section in ("common", "templates", "schemes", "messages", "intake_errors"):
        assert set(other[section]) == set(english[section]), f"{language}.{section}: keys differ from en"
        for key, text in other[section].items():
            extra = placeholders(text) - placeholders(english[section][key])
            assert not extra, f"{language}.{section}.{key}: unknown placeholders {extra}"
    assert set(english["schemes"]) == set(get_args(SchemeId))


@pytest.mark.parametrize("case", CASES, ids=[f"{c.scheme}: {c.name}" for c in CASES])
def test_every_emitted_key_is_scanned_and_renders_in_every_language(case: Case) -> None:
    store = STORE.with_operator(OperatorParameters.from_mapping(case.operator, source=case.source))
    decision = evaluate(case.application, store)
    for result in decision.criteria:
        assert SCAN.covers(result.message_key), f"{result.message_key} is emitted but the static scan misses it"
    event = EligibilityDecided(
        application_id=case.application.application_id,
        scheme=case.application.scheme,
        decided_at=datetime(2024, 1, 1, tzinfo=UTC),
        reference_date=decision.reference_date,
        time_zone=decision.time_zone,
        outcome=decision.outcome,
        parameter_version=decision.parameter_version,
        criteria=[r.model_copy() for r in decision.criteria],
        proposed_grant=decision.proposed_grant,
        recipient=Recipient(language="en", contact=Contact(name="T", email="t@example.org"), organisation_name="Org"),
    )
    for language in LANGUAGES:
        formatter = Formatter(CATALOG, language, locale_for(language, case.scheme), decision.time_zone)
        for result in decision.criteria:
            explain(formatter, result)
        assert not formatter.problems, f"{language}: {formatter.problems}"
        recipient = event.recipient.model_copy(update={"language": language})
        email = render_email(CATALOG, event.model_copy(update={"recipient": recipient}))
        assert not email.problems, f"{language}: {email.problems}"
        assert case.application.application_id in email.subject
