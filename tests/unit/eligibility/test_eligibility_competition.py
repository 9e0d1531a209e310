"""Competitive selection: ranking by total score, the stated tie rule, the cap."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.eligibility.competition import (
    NIC_ASPECTS,
    S3_CRITERIA,
    Candidate,
    rank_and_select,
    selection_cap,
    total_score,
)
from services.eligibility.parameters import OperatorParameters, OperatorParameterUnset, ParameterStore

pytestmark = pytest.mark.unit

T0 = datetime(2018, 5, 20, 10, 0, tzinfo=UTC)


def candidate(app_id: str, score: int, at: datetime = T0, criteria: tuple[str, ...] = S3_CRITERIA) -> Candidate:
    """Every criterion scored `score` by one assessor."""
    return Candidate(app_id, at, {c: [score] for c in criteria})


def test_s3_has_seven_criteria_and_nic_five_aspects() -> None:
    assert len(S3_CRITERIA) == 7
    assert len(NIC_ASPECTS) == 5


def test_highest_total_first_and_cap_selects() -> None:
    ranked = rank_and_select([candidate("a", 3), candidate("b", 5), candidate("c", 4)], S3_CRITERIA, cap=2)
    assert [(r.application_id, r.rank, r.selected) for r in ranked] == [("b", 1, True), ("c", 2, True), ("a", 3, False)]
    assert ranked[0].total == 35


def test_tie_broken_by_earliest_submission_then_application_id() -> None:
    later = T0 + timedelta(minutes=1)
    same_instant_other_zone = T0.astimezone(timezone(timedelta(hours=2)))
    ranked = rank_and_select(
        [candidate("z", 4, later), candidate("y", 4, same_instant_other_zone), candidate("x", 4, T0)],
        S3_CRITERIA,
        cap=1,
    )
    assert [r.application_id for r in ranked] == ["x", "y", "z"]
    assert [r.selected for r in ranked] == [True, False, False]


def test_assessors_scores_are_averaged_exactly() -> None:
    scores = {c: [4] for c in NIC_ASPECTS}
    scores["synergy"] = [3, 4]
    assert total_score(Candidate("n", T0, scores), NIC_ASPECTS) == Fraction(4 * 4) + Fraction(7, 2)


def test_cap_larger_than_the_field_selects_all_and_zero_selects_none() -> None:
    field = [candidate("a", 1), candidate("b", 2)]
    assert all(r.selected for r in rank_and_select(field, S3_CRITERIA, cap=25))
    assert not any(r.selected for r in rank_and_select(field, S3_CRITERIA, cap=0))


@pytest.mark.parametrize(
    ("scores", "problem"),
    [
        ({c: [3] for c in S3_CRITERIA[:-1]}, "has no score"),
        ({**{c: [3] for c in S3_CRITERIA}, "charm": [5]}, "unknown criteria"),
        ({**{c: [3] for c in S3_CRITERIA}, "sustainability": [2.5]}, "not a whole number"),
        ({**{c: [3] for c in S3_CRITERIA}, "sustainability": [-1]}, "not a whole number"),
    ],
)
def test_invalid_scores_are_refused(scores: dict[str, list[int]], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        rank_and_select([Candidate("a", T0, scores)], S3_CRITERIA, cap=1)


def test_duplicate_candidates_and_bad_caps_are_refused() -> None:
    with pytest.raises(ValueError, match="only once"):
        rank_and_select([candidate("a", 1), candidate("a", 2)], S3_CRITERIA, cap=1)
    with pytest.raises(ValueError, match="cap"):
        rank_and_select([candidate("a", 1)], S3_CRITERIA, cap=-1)


def test_selection_cap_comes_from_the_operator() -> None:
    store = ParameterStore.load()
    with pytest.raises(OperatorParameterUnset):
        selection_cap(store, "s3.platform")
    store = store.with_operator(OperatorParameters.from_mapping({"s3": {"platform_selection_cap": 22}}))
    assert selection_cap(store, "s3.platform") == 22


@given(
    st.lists(
        st.tuples(st.integers(0, 10), st.integers(0, 3600)),
        min_size=0,
        max_size=40,
    ),
    st.integers(0, 30),
)
def test_ranking_is_a_deterministic_total_order(entries: list[tuple[int, int]], cap: int) -> None:
    field = [candidate(f"app-{i:03d}", s, T0 + timedelta(seconds=sec)) for i, (s, sec) in enumerate(entries)]
    ranked = rank_and_select(field, S3_CRITERIA, cap)
    assert rank_and_select(list(reversed(field)), S3_CRITERIA, cap) == ranked
    assert sum(r.selected for r in ranked) == min(cap, len(field))
    by_id = {c.application_id: c for c in field}
    keys = [(-r.total, by_id[r.application_id].submitted_at, r.application_id) for r in ranked]
    assert keys == sorted(keys)
    assert all(r.selected for r in ranked[:cap])
