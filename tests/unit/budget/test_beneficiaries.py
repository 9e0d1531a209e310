"""Ceilings per beneficiary, pure: what is left, cut or refused, word by word."""

from __future__ import annotations

from datetime import date

import pytest

from services.budget import beneficiaries as ben
from tests.unit.budget.builders import config, grant

pytestmark = pytest.mark.unit

EUR = 100
DAY = date(2020, 1, 15)
CEILINGS = config().beneficiary_ceilings
WHO = "BE-BCE_KBO-0700000005"


def balances(
    used: dict[tuple[str, int], int] | None = None, years: dict[int, int] | None = None
) -> dict[ben.LimitKey, ben.LimitBalance]:
    out: dict[ben.LimitKey, ben.LimitBalance] = {}
    for y in range(2018, 2035):
        key = ben.LimitKey("vlaio.spearhead-cluster/yearly", WHO, y)
        out[key] = ben.LimitBalance(key, "EUR", (used or {}).get(("yearly", y), 0))
    key = ben.LimitKey("vlaio.spearhead-cluster/years", WHO)
    held = years or {}
    out[key] = ben.LimitBalance(key, "years", len(held), held)
    return out


def test_a_spearhead_cluster_is_cut_to_what_is_left_of_each_year_and_told_why() -> None:
    g = grant("vlaio.clusters", {2020: 400_000 * EUR, 2021: 100_000 * EUR})
    outcome = ben.decide("vlaio.spearhead-cluster", g, WHO, CEILINGS, balances({("yearly", 2020): 300_000 * EUR}), DAY)
    assert isinstance(outcome, ben.Outcome)
    cut, whole = outcome.grant.schedule
    assert (cut.amount.amount_minor, cut.requested.amount_minor, cut.limited_by) == (  # type: ignore[union-attr]  # cut keeps what was asked
        200_000 * EUR,
        400_000 * EUR,
        "beneficiary-ceiling:vlaio.spearhead-cluster/yearly",
    )
    assert whole.amount.amount_minor == 100_000 * EUR and whole.limited_by is None
    assert outcome.bound == [
        ben.Bound("beneficiary-ceiling:vlaio.spearhead-cluster/yearly", 2020, 200_000 * EUR, 400_000 * EUR, "EUR")
    ]
    yearly = {d.key.budget_year: d.amount for d in outcome.draws if d.unit == "EUR"}
    assert yearly == {2020: 200_000 * EUR, 2021: 100_000 * EUR}


def test_the_tenth_year_is_the_last_a_cluster_is_granted_across_its_grants() -> None:
    held = {y: 1 for y in range(2011, 2020)}  # nine years already
    g = grant("vlaio.clusters", {2020: 100 * EUR, 2021: 100 * EUR})
    outcome = ben.decide("vlaio.spearhead-cluster", g, WHO, CEILINGS, balances(years=held), DAY)
    assert isinstance(outcome, ben.Outcome)
    assert [s.budget_year for s in outcome.grant.schedule] == [2020]
    assert [(s.budget_year, s.limited_by) for s in outcome.grant.not_granted] == [
        (2021, "beneficiary-ceiling:vlaio.spearhead-cluster/years")
    ]
    refused = ben.decide("vlaio.spearhead-cluster", g, WHO, CEILINGS, balances(years={**held, 2019: 1, 2010: 1}), DAY)
    assert isinstance(refused, ben.BeneficiaryRefusal) and (refused.available, refused.requested, refused.unit) == (0, 2, "years")


def test_s3_refuses_and_a_second_voucher_is_refused() -> None:
    s3 = grant("s3", {2019: 300_000_00}, currency="SEK", instrument="s3-pilot-financing")
    key = ben.LimitKey("s3.financing/total", WHO)
    refused = ben.decide("s3.financing", s3, WHO, CEILINGS, {key: ben.LimitBalance(key, "SEK", 400_000_00)}, DAY)
    assert refused == ben.BeneficiaryRefusal(
        "beneficiary-ceiling:s3.financing/total", "budget.beneficiary_ceiling_exceeded", 2019, 200_000_00, 300_000_00, "SEK"
    )
    voucher = grant("ttc", {2015: 500_000}, instrument="innovation-voucher")
    key = ben.LimitKey("ttc.innovation-voucher/per-company", WHO)
    refused = ben.decide("ttc.innovation-voucher", voucher, WHO, CEILINGS, {key: ben.LimitBalance(key, "count", 1)}, DAY)
    assert isinstance(refused, ben.BeneficiaryRefusal) and (refused.available, refused.requested) == (0, 1)
