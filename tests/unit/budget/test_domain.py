"""The budget's pure rules: ceilings from the documents, exact splits, fits, releases, resets."""

from __future__ import annotations

from fractions import Fraction

import pytest

from services.budget.domain import (
    COUNT,
    Placement,
    PotBalance,
    Refusal,
    ReleaseError,
    Slice,
    check_ceilings,
    check_fits,
    check_shape,
    check_years,
    decide_reset,
    initial_state,
    place,
    plan_release,
    split,
    split_amount,
)
from tests.unit.budget.builders import config, grant, programme_with_pots

pytestmark = pytest.mark.unit

EUR = 100  # minor units per euro
DOCS = config()
TTC_SHARES = [("erdf", 249701100, 499402200), ("co-financing", 249701100, 499402200)]


def test_spearhead_yearly_ceiling_is_500000_a_year_for_up_to_10_years() -> None:
    ok = grant("vlaio.clusters", {y: 500_000 * EUR for y in range(2020, 2030)})
    assert check_ceilings("vlaio.spearhead-cluster", ok, DOCS.ceilings) is None
    over = grant("vlaio.clusters", {2020: 500_000 * EUR + 1})
    refusal = check_ceilings("vlaio.spearhead-cluster", over, DOCS.ceilings)
    assert refusal is not None
    assert (refusal.limit, refusal.message_key) == (
        "yearly-ceiling:vlaio.spearhead-cluster/coordination-subsidy",
        "budget.yearly_ceiling_exceeded",
    )
    assert (refusal.available, refusal.requested, refusal.budget_year) == (500_000 * EUR, 500_000 * EUR + 1, 2020)
    eleven = grant("vlaio.clusters", {2020: EUR, 2030: EUR})
    too_long = check_ceilings("vlaio.spearhead-cluster", eleven, DOCS.ceilings)
    assert too_long is not None
    assert too_long.limit.startswith("duration:")
    assert too_long.requested == 11


def test_network_ceiling_is_150000_a_year_for_up_to_3_years() -> None:
    assert (
        check_ceilings("vlaio.business-network", grant("vlaio.clusters", {2020: 150_000 * EUR, 2022: 1}), DOCS.ceilings) is None
    )
    over = check_ceilings("vlaio.business-network", grant("vlaio.clusters", {2020: 150_000 * EUR + 1}), DOCS.ceilings)
    assert over is not None
    assert over.available == 150_000 * EUR
    four = check_ceilings("vlaio.business-network", grant("vlaio.clusters", {2020: 1, 2023: 1}), DOCS.ceilings)
    assert four is not None
    assert four.message_key == "budget.too_many_years"


def test_s3_financing_is_at_most_600000_sek_over_at_most_two_years() -> None:
    def s3(schedule: dict[int, int]) -> Refusal | None:
        return check_ceilings(
            "s3.financing", grant("s3", schedule, currency="SEK", instrument="s3-pilot-financing"), DOCS.ceilings
        )

    assert s3({2018: 300_000 * 100, 2019: 300_000 * 100}) is None
    over = s3({2018: 300_000 * 100, 2019: 300_000 * 100 + 1})
    assert over is not None
    assert over.limit == "grant-ceiling:s3.financing/s3-pilot-financing"
    assert s3({2018: 1, 2020: 1}) is not None


def test_ttc_draws_on_erdf_and_co_financing_in_the_programme_proportion_exactly() -> None:
    voucher = grant("ttc", {2015: 5_000 * EUR + 1}, instrument="innovation-voucher", shares=TTC_SHARES)
    draws = split(voucher)
    assert [(d.fund, d.amount_minor) for d in draws] == [("erdf", 250_001), ("co-financing", 250_000)]
    placed = place(voucher, DOCS)
    assert isinstance(placed, list)
    assert {(p.pot_id, p.unit, p.amount) for p in placed} == {
        ("ttc/erdf", "EUR", 250_001),
        ("ttc/co-financing", "EUR", 250_000),
        ("ttc/innovation-voucher/count", COUNT, 1),
    }


@pytest.mark.parametrize("amount", [0, 1, 2, 3, 99, 5_000_00, 123_456_789])
def test_split_never_loses_or_invents_a_minor_unit(amount: int) -> None:
    shares = [(1, 3), (1, 3), (1, 3)]
    parts = split_amount(amount, shares)
    assert sum(parts) == amount
    assert all(p >= 0 for p in parts)
    assert max(parts) - min(parts) <= 2


def test_fund_shares_must_be_whole_and_the_currency_the_programme_s() -> None:
    partial = grant("ttc", {2015: 100}, shares=[("erdf", 1, 2)])
    refusal = check_shape(partial, DOCS)
    assert refusal is not None
    assert refusal.message_key == "budget.fund_shares_not_whole"
    sek = grant("ttc", {2015: 100}, currency="SEK", shares=TTC_SHARES)
    refusal = check_shape(sek, DOCS)
    assert refusal is not None
    assert refusal.message_key == "budget.currency_mismatch"
    assert check_shape(grant("ttc", {2015: 100}, shares=TTC_SHARES), DOCS) is None
    assert sum(Fraction(n, d) for _, n, d in TTC_SHARES) == 1


def test_a_pot_without_an_operator_total_refuses_instead_of_guessing() -> None:
    s3 = grant("s3", {2018: 100}, currency="SEK", instrument="s3-pilot-financing")
    refusal = place(s3, DOCS)
    assert not isinstance(refusal, list)
    assert refusal.message_key == "budget.pot_not_configured"
    with_pot = config(programme_with_pots("s3", {"agency": 10_000}, currency="SEK"))
    refusal = place(s3, with_pot)
    assert not isinstance(refusal, list)
    assert (refusal.limit, refusal.message_key) == ("count:s3/selection", "budget.limit_not_set")


def test_neither_pot_may_go_below_zero() -> None:
    placements = [
        Placement("p/a", 2020, "EUR", 60),
        Placement("p/b", 2020, "EUR", 40),
        Placement("p/a", 2021, "EUR", 5),
    ]
    fits = {"p/a": PotBalance("p/a", "EUR", 100, 40, 5), "p/b": PotBalance("p/b", "EUR", 100, 0, 0)}
    assert check_fits(placements, fits) is None  # a: 65 of 65 left
    tight = {**fits, "p/b": PotBalance("p/b", "EUR", 100, 61, 0)}
    refusal = check_fits(placements, tight)
    assert refusal is not None
    assert (refusal.limit, refusal.available, refusal.requested, refusal.unit) == ("pot:p/b", 39, 40, "EUR")
    whole_period = check_fits(placements, {**fits, "p/a": PotBalance("p/a", "EUR", 100, 40, 4)})
    assert whole_period is not None
    assert (whole_period.limit, whole_period.budget_year) == ("pot:p/a", 2020)  # the first year drawing on it
    counted = check_fits([Placement("c", 2020, COUNT, 1)], {"c": PotBalance("c", COUNT, 35, 35, 0)})
    assert counted is not None
    assert counted.message_key == "budget.count_exhausted"
    assert counted.available == 0


def test_closed_years_stay_closed_and_the_open_year_applies_its_maximum() -> None:
    g = grant("vlaio.hermes", {2021: 300, 2022: 300}, instrument="hermes-earmark", shares=[("hermes", 1, 1)], conditional=True)
    assert check_years(g, None, None) is None
    assert check_years(g, 2021, 300) is None
    over = check_years(g, 2021, 299)
    assert over is not None
    assert over.limit == "yearly-maximum:vlaio.hermes/2021"
    assert over.available == 299
    closed = check_years(g, 2022, None)
    assert closed is not None
    assert closed.message_key == "budget.year_closed"
    assert closed.budget_year == 2021
    assert initial_state(2021, 2021) == "open"
    assert initial_state(2022, 2021) == "scheduled"
    assert initial_state(2021, None) == "scheduled"


def test_reset_opens_the_next_year_once_and_never_reopens_a_closed_one() -> None:
    assert decide_reset(None, 2020, opened=False) == "open"
    assert decide_reset(2020, 2021, opened=False) == "open"
    assert decide_reset(2021, 2021, opened=True) == "duplicate"
    assert decide_reset(2021, 2020, opened=True) == "duplicate"
    assert decide_reset(2021, 2019, opened=False) == "closed"
    assert decide_reset(2021, 2023, opened=False) == "gap"


SLICES = [
    Slice("p/erdf", 2020, "EUR", "erdf", 500, "open"),
    Slice("p/co", 2020, "EUR", "co", 500, "open"),
    Slice("p/erdf", 2021, "EUR", "erdf", 501, "scheduled"),
    Slice("p/co", 2021, "EUR", "co", 500, "scheduled"),
    Slice("p/count", 2020, COUNT, None, 1, "open"),
]
SHARES = [("erdf", 1, 2), ("co", 1, 2)]


def test_withdrawal_returns_only_future_slices() -> None:
    plan = plan_release(SLICES, SHARES, None)
    assert {(p.pot_id, p.budget_year, p.amount) for p in plan.releases} == {("p/erdf", 2021, 501), ("p/co", 2021, 500)}
    unopened = [Slice("p/count", 2022, COUNT, None, 1, "scheduled")]
    assert [p.amount for p in plan_release(unopened, SHARES, None).releases] == [1]


def test_reduction_cuts_a_future_year_per_fund_and_refuses_the_rest() -> None:
    plan = plan_release(SLICES, SHARES, {2021: 601})
    assert {(p.pot_id, p.amount) for p in plan.releases} == {("p/erdf", 200), ("p/co", 200)}
    with pytest.raises(ReleaseError, match="already opened"):
        plan_release(SLICES, SHARES, {2020: 0})
    with pytest.raises(ReleaseError, match="raise"):
        plan_release(SLICES, SHARES, {2021: 2_000})
    with pytest.raises(ReleaseError, match="no slice"):
        plan_release(SLICES, SHARES, {2025: 0})
