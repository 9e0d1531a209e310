"""The chaos run's money bookkeeping (deploy/local/chaos.py): its beneficiaries' register numbers carry
correct check digits, and the ledger an agency system rebuilds from GrantCommitted and GrantReleased
splits amounts over fund shares exactly as the budget does; the ranking it expects of its competitive
call, worked out on its own, is the one the seed's rules give; and its check of S3 step 2 against
that call's selection tells a wrong verdict."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from deploy.local.chaos import (
    Report,
    Scoring,
    check_capped,
    check_step_2,
    expected_ranking,
    kbo,
    ledger_from_topics,
    organisasjonsnummer,
    organisationsnummer,
    scores_for,
    split,
)
from services.eligibility.competition import S3_CRITERIA, Candidate, rank_and_select
from services.eligibility.registers import kbo_check_valid, luhn_valid, mod11_valid

pytestmark = pytest.mark.unit


def test_generated_register_numbers_are_valid_and_distinct() -> None:
    numbers = [(kbo(k), organisationsnummer(k), organisasjonsnummer(k)) for k in range(1000)]
    for be, se, no in numbers:
        assert kbo_check_valid(be.replace(".", "")), be
        assert luhn_valid(se.replace("-", "")), se
        assert mod11_valid(no.replace(" ", "")), no
    for column in range(3):
        assert len({n[column] for n in numbers}) == 1000


def test_split_rounds_each_share_down_and_gives_the_remainder_to_the_first_fund() -> None:
    shares = [{"fund": "erdf", "numerator": 1, "denominator": 3}, {"fund": "co-financing", "numerator": 2, "denominator": 3}]
    assert split(100, shares) == {"erdf": 34, "co-financing": 66}
    assert sum(split(1_000_001, shares).values()) == 1_000_001


def test_ledger_from_topics_is_commitments_less_releases_per_programme_fund_and_year() -> None:
    grant = {
        "programme": "ttc",
        "fund_shares": [
            {"fund": "erdf", "numerator": 1, "denominator": 2},
            {"fund": "co-financing", "numerator": 1, "denominator": 2},
        ],
        "schedule": [
            {"budget_year": 2013, "amount": {"amount_minor": 101, "currency": "EUR"}},
            {"budget_year": 2014, "amount": {"amount_minor": 50, "currency": "EUR"}},
        ],
    }
    released = {
        "programme": "ttc",
        "released": [
            {"budget_year": 2014, "fund": "erdf", "amount": {"amount_minor": 25, "currency": "EUR"}},
            {"budget_year": 2014, "fund": "co-financing", "amount": {"amount_minor": 25, "currency": "EUR"}},
        ],
    }
    assert ledger_from_topics([{"grant": grant}, {"grant": grant}], [released]) == {
        ("ttc", "erdf", 2013): 102,
        ("ttc", "co-financing", 2013): 100,
        ("ttc", "erdf", 2014): 25,
        ("ttc", "co-financing", 2014): 25,
    }


def test_the_chaos_runs_expected_ranking_is_the_one_the_competition_rules_give_ties_included() -> None:
    ids = [f"Cabc123-{i:07d}" for i in range(0, 3200, 16)]
    scoring = Scoring(S3_CRITERIA)
    for app in ids:
        if (scores := scores_for(app, S3_CRITERIA)) is not None:
            scoring.latest[app] = scores
    assert 0.7 * len(ids) < len(scoring.latest) < 0.9 * len(ids)  # about one in five left unscored
    assert {len(by) for by in scoring.latest.values()} == {1, 2}  # one assessor or two
    start = datetime(2018, 5, 20, 8, tzinfo=UTC)
    submitted = {app: start + timedelta(minutes=i % 3) for i, app in enumerate(ids)}  # ties broken by time, then id
    want = expected_ranking(scoring, submitted, 25)
    candidates = [
        Candidate(app, submitted[app], {c: [s[c] for s in by.values()] for c in S3_CRITERIA})
        for app, by in scoring.latest.items()
    ]
    ranked = rank_and_select(candidates, S3_CRITERIA, 25)
    assert [(r.application_id, r.rank, r.total, r.selected) for r in ranked] == want
    assert len({total for _, _, total, _ in want}) < len(want)  # the run's scores tie: the tie rule is exercised
    assert sum(selected for *_, selected in want) == 25


CLOSED = datetime(2018, 6, 1, 12, 0, tzinfo=UTC)


def _platform(application_id: str, beneficiary_id: str) -> dict[str, object]:
    return {"application_id": application_id, "scheme": "s3.platform", "beneficiary_id": beneficiary_id, "criteria": []}


def _financing(application_id: str, beneficiary_id: str, after_s: float, outcome: str) -> dict[str, object]:
    return {
        "application_id": application_id,
        "scheme": "s3.financing",
        "beneficiary_id": beneficiary_id,
        "decided_at": (CLOSED + timedelta(seconds=after_s)).isoformat(),
        "criteria": [{"criterion": "selected_for_platform", "outcome": outcome}],
    }


def _step_2(financing: list[dict[str, object]]) -> Report:
    call = {
        "closed_at": CLOSED.isoformat(),
        "ranking": [{"application_id": "p1", "selected": True}, {"application_id": "p2", "selected": False}],
    }
    report = Report()
    check_step_2([_platform("p1", "se:1"), _platform("p2", "se:2"), *financing], call, report)
    return report


def test_step_2_after_the_close_passes_exactly_the_selected_beneficiaries() -> None:
    right = [
        _financing("f1", "se:1", 60, "passed"),
        _financing("f2", "se:2", 60, "failed"),
        _financing("f3", "se:1", -60, "not_decidable"),
        _financing("f4", "se:2", 2, "passed"),  # within the margin of the close: either side may be right
    ]
    report = _step_2(right)
    assert report.violations == []
    assert report.figures["step_2"] == {"after:failed": 1, "after:passed": 1, "before:not_decidable": 1}

    for wrong in (
        _financing("f5", "se:2", 60, "passed"),  # not selected, passed
        _financing("f5", "se:1", 60, "failed"),  # selected, failed
        _financing("f5", "se:1", -60, "passed"),  # decided before the close on a selection not yet made
    ):
        violations = _step_2([*right, wrong]).violations
        assert len(violations) == 1 and "f5" in violations[0], violations


def test_step_2_without_both_kinds_after_the_close_proves_nothing() -> None:
    report = _step_2([_financing("f1", "se:1", 60, "passed"), _financing("f3", "se:1", -60, "not_decidable")])
    assert report.violations and "no application of each kind" in report.violations[0]


def _capped(app: str, returned: int, left: int, *, year: int = 2018, programme: str = "vlaio.hermes") -> dict[str, Any]:
    money = {"currency": "EUR"}
    return {
        "application_id": app,
        "programme": programme,
        "reason": "capped",
        "released": [{"budget_year": year, "fund": "hermes", "amount": {"amount_minor": returned, **money}}],
        "remaining": [
            {"budget_year": year, "amount": {"amount_minor": left, **money}},
            {"budget_year": year + 1, "amount": {"amount_minor": 90_000_000, **money}},
        ],
    }


def test_the_capped_releases_check_passes_what_the_opening_should_do_and_tells_each_way_it_could_go_wrong() -> None:
    good = [_capped("a", 40_000_000, 60_000_000), _capped("b", 10_000_000, 60_000_000)]
    ledger = {"a": 40_000_000, "b": 10_000_000}
    report = Report()
    check_capped(good, ledger, report)
    assert report.violations == []
    wrong_ways = {
        "nothing capped": ([], {}),
        "a grant capped twice": ([*good, _capped("a", 40_000_000, 60_000_000)], ledger),
        "left above the maximum": ([_capped("a", 30_000_000, 70_000_000), good[1]], {**ledger, "a": 30_000_000}),
        "another year returned": ([_capped("a", 40_000_000, 60_000_000, year=2019), good[1]], ledger),
        "another programme": ([_capped("a", 40_000_000, 60_000_000, programme="vlaio.clusters"), good[1]], ledger),
        "an event the ledger lacks": (good, {"a": 40_000_000}),
        "a cap with no event": ([good[0]], ledger),
        "amounts that differ": (good, {**ledger, "b": 10_000_001}),
    }
    for what, (events, in_ledger) in wrong_ways.items():
        report = Report()
        check_capped(events, in_ledger, report)
        assert len(report.violations) == 1, what
