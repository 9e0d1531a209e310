"""The chaos run's money bookkeeping (deploy/local/chaos.py): its beneficiaries' register numbers carry
correct check digits, and the ledger an agency system rebuilds from GrantCommitted and GrantReleased
splits amounts over fund shares exactly as the budget does."""

from __future__ import annotations

import pytest

from deploy.local.chaos import kbo, ledger_from_topics, organisasjonsnummer, organisationsnummer, split
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
