"""Programme periods: `open-year` opens only the next year inside them (issue 11: `open-year ttc 1800`
and `open-year vlaio.hermes 2030` must be refused), the document's period where it gives one, the
operator's otherwise, never an operator's change to a document period."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.budget.config import ConfigError, load
from services.budget.domain import Period, ProgrammeSpec, check_year_opening

pytestmark = pytest.mark.unit

S3 = ProgrammeSpec("s3", "SEK", "test", period=Period(2018, 2021, "test"))


def test_the_documents_give_the_s3_pilot_period_and_leave_the_others_to_the_operator() -> None:
    programmes = load(None).programmes
    s3 = programmes["s3"].period
    assert s3 is not None and (s3.first_year, s3.last_year) == (2018, 2021)
    assert "startar 2018 och pågår till 2021" in s3.source  # the document's own words
    # TTC: the document names the programming period 2007-2013 but calls the project running in
    # 2014, so it gives no budget-year period; VLAIO and NIC give none either.
    assert all(programmes[p].period is None for p in ("vlaio.clusters", "vlaio.hermes", "ttc", "nic"))


@pytest.mark.parametrize(
    ("open_year", "year", "problem"),
    [
        (None, 2018, None),  # nothing open: the period's first year
        (None, 2019, "the first to open is 2018"),
        (None, 1800, "outside the period of s3, 2018-2021"),
        (2018, 2019, None),  # the next one
        (2018, 2018, None),  # asked again: changes nothing
        (2018, 2020, "only 2019 can be opened next"),
        (2019, 2017, "outside the period"),
        (2021, 2022, "outside the period of s3, 2018-2021"),
        (2020, 2030, "outside the period"),
    ],
)
def test_only_the_next_year_inside_the_period_opens(open_year: int | None, year: int, problem: str | None) -> None:
    found = check_year_opening(S3, open_year, year)
    assert found is None if problem is None else problem in str(found), found


def test_a_programme_without_a_period_opens_no_year() -> None:
    unset = ProgrammeSpec("nic", "NOK", "test")
    assert "the period of nic is not set" in str(check_year_opening(unset, None, 2024))


def test_the_operator_sets_an_open_period_but_cannot_change_a_document_one(tmp_path: Path) -> None:
    operator = tmp_path / "pots.yaml"
    operator.write_text(
        "programmes:\n"
        "  - {programme: nic, currency: NOK, source: agency,\n"
        "     period: {first_year: 2024, last_year: 2028, source: 'agency decision 2023-12'}}\n"
    )
    nic = load(operator).programmes["nic"]
    assert nic.period == Period(2024, 2028, "agency decision 2023-12")
    assert nic.source.startswith("seed 004")  # the document's entry, with the operator's period
    operator.write_text(
        "programmes:\n"
        "  - {programme: s3, currency: SEK, source: agency, period: {first_year: 2018, last_year: 2030, source: agency}}\n"
    )
    with pytest.raises(ConfigError, match="the documents give 2018-2021"):
        load(operator)
    operator.write_text(
        "programmes:\n"
        "  - {programme: nic, currency: NOK, source: agency, period: {first_year: 2028, last_year: 2024, source: agency}}\n"
    )
    with pytest.raises(ConfigError, match="first_year must not come after last_year"):
        load(operator)
