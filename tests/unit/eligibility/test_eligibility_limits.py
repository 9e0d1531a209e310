"""Every limit is read word by word, and the decisions follow the reading.

A limit (a scheme parameter or an operator key with a `limit` reading) either caps what is
*granted* (a request beyond it is eligible, granted the limit, and the schedule names the limit
that bound) or limits what may be *asked* (a request beyond it is refused). Each limit has cases at
it, inside it and outside it; the quoted words are the document's own.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from services.eligibility.domain import evaluate
from services.eligibility.parameters import LimitReading, OperatorParameters, ParameterStore
from services.eligibility.schemes import SCHEMES
from tests.unit.eligibility.cases import Case, all_cases

pytestmark = pytest.mark.unit

STORE = ParameterStore.load()
CASES = list(all_cases())
SEEDS = Path(__file__).resolve().parents[3] / ".." / "shared" / "seeds"


def limits_of(scheme: str) -> dict[str, LimitReading]:
    found = {name: p.limit for name, p in STORE.scheme(scheme).parameters.items() if p.limit is not None}
    found |= {key.key: key.limit for key in SCHEMES[scheme].operator_keys if key.limit is not None}
    return found


LIMITS = [(scheme, name, reading) for scheme in SCHEMES for name, reading in limits_of(scheme).items()]


def test_the_limits_of_the_documents_are_read() -> None:
    """The limits issue 11 names, with the reading it gives them, and the others the documents state."""
    kinds = {(scheme, name): reading.kind for scheme, name, reading in LIMITS}
    assert kinds[("vlaio.spearhead-cluster", "yearly_ceiling")] == "granted"  # "maximum toegekende subsidie"
    assert kinds[("vlaio.business-network", "yearly_ceiling")] == "granted"
    assert kinds[("s3.financing", "max_amount")] == "request"  # "Högsta belopp att söka"
    assert kinds[("ttc.innovation-voucher", "voucher_amount")] == "granted"
    assert kinds[("ttc.innovation-fund", "grant_maximum")] == "request"
    assert kinds[("vlaio.cluster-pact", "vlaio.hermes_yearly_maximum_eur")] == "granted"
    assert {s for s, _, _ in LIMITS} == set(SCHEMES) - {"vlaio.spearhead-project"}  # the project route states none


def _words(text: str) -> str:
    return " ".join(text.replace("•", " ").split())


@pytest.mark.parametrize(("scheme", "name", "reading"), LIMITS, ids=[f"{s}: {n}" for s, n, _ in LIMITS])
def test_each_reading_quotes_the_document_in_its_language_and_in_english(scheme: str, name: str, reading: LimitReading) -> None:
    source = STORE.scheme(scheme).source
    if not reading.quote:  # the document is silent: the reading says so
        assert "004 states no" in reading.reading or "not in" in reading.reading, (scheme, name)
        return
    assert set(reading.quote) == {source.language, "en"}, (scheme, name)
    seed = SEEDS / Path(source.file).name
    if seed.is_file():  # the seeds sit beside the repository; where they do, the words must be theirs
        assert _words(reading.quote[source.language]) in _words(seed.read_text(encoding="utf-8")), (scheme, name)


@pytest.mark.parametrize(("scheme", "name", "reading"), LIMITS, ids=[f"{s}: {n}" for s, n, _ in LIMITS])
def test_each_limit_has_cases_at_inside_and_outside_it(scheme: str, name: str, reading: LimitReading) -> None:
    sides = {tag["side"] for case in CASES if case.scheme == scheme for tag in case.limits if tag["name"] == name}
    assert sides == {"at", "inside", "outside"}, f"{scheme}: {name} has cases {sides}"


def test_every_limit_tag_names_a_limit_of_its_scheme() -> None:
    for case in CASES:
        for tag in case.limits:
            assert tag["name"] in limits_of(case.scheme), f"{case.source}: {tag}"
            assert tag["side"] in {"at", "inside", "outside"}, f"{case.source}: {tag}"


def _decide(case: Case):
    return evaluate(case.application, STORE.with_operator(OperatorParameters.from_mapping(case.operator)))


TAGGED = [(case, tag) for case in CASES for tag in case.limits]


@pytest.mark.parametrize(("case", "tag"), TAGGED, ids=[f"{c.scheme}: {c.name}: {t['name']} {t['side']}" for c, t in TAGGED])
def test_the_decision_follows_the_reading(case: Case, tag: dict[str, str]) -> None:
    reading = limits_of(case.scheme)[tag["name"]]
    decision = _decide(case)
    grant = decision.proposed_grant
    bound = [] if grant is None else [s for s in (*grant.schedule, *grant.not_granted) if s.limited_by == tag["name"]]
    if tag["side"] != "outside":
        assert decision.outcome == "eligible" and not bound, f"{case.source}: within the limit, yet {decision.outcome}, {bound}"
    elif reading.kind == "granted":
        assert decision.outcome == "eligible", f"{case.source}: a cap must not refuse"
        assert bound, f"{case.source}: beyond a cap, the schedule must name {tag['name']}"
        assert all(s.amount.amount_minor <= (s.requested.amount_minor if s.requested else 0) for s in bound)
    else:
        assert decision.outcome == "ineligible", f"{case.source}: beyond a limit on the request, it is refused"
        assert grant is None
