"""Open-data exports on the real PostgreSQL: grants committed (and released) by the budget's own
handlers, applications stored by intake's repository, then `load_committed` joins them in one
database and the exports are written and validated against the published 360Giving schema."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import secrets
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from services.budget import handlers, opendata
from services.budget.opendata import OpenDataConfig, OpenDataError
from services.intake import repository as intake_repository
from shared.events import Application
from tests.integration.budget.conftest import Ledger
from tests.unit.budget.builders import config, decided, grant, programme_with_pots
from tests.unit.test_opendata import assert_valid, sample

pytestmark = pytest.mark.integration

EU_SHARES = [("erdf", 2497011, 4994022), ("co-financing", 2497011, 4994022)]


async def _store_application(pool: asyncpg.Pool, application: Application) -> None:
    body = application.model_dump_json().encode()
    async with pool.acquire() as conn:
        assert (
            await intake_repository.insert_application(
                conn, application, "http", hashlib.sha256(body).hexdigest(), datetime.now(UTC)
            )
            is None
        )


def _config(eu_programme: str, agency_programme: str) -> OpenDataConfig:
    return OpenDataConfig.model_validate(
        {
            "threesixtygiving": {
                "identifier_prefix": "360G-test",
                "license": "https://creativecommons.org/licenses/by/4.0/",
                "publisher": {"name": "integration test publisher"},
            },
            "programmes": {
                eu_programme: {
                    "title": "EU test programme",
                    "funding_organisation": {"id": "360G-test-funder-eu", "name": "EU test funder"},
                    "eu": {"cci": "TESTCCI", "operation_code": "{cci}-{application_id}"},
                },
                agency_programme: {"funding_organisation": {"id": "360G-test-funder-agency", "name": "Agency"}},
            },
        }
    )


async def test_committed_grants_are_exported_from_the_ledger_and_intake(
    pool: asyncpg.Pool, database_url: str, tmp_path: Path
) -> None:
    ledger = Ledger(pool)
    eu_programme, agency_programme = f"t{secrets.token_hex(4)}", f"t{secrets.token_hex(4)}"
    eu_file = programme_with_pots(eu_programme, {"erdf": 10**10, "co-financing": 10**10})
    agency_file = programme_with_pots(agency_programme, {"agency": 10**10})
    cfg = config({key: eu_file[key] + agency_file[key] for key in eu_file})
    await ledger.load(cfg)
    run = secrets.token_hex(4).upper()

    # an EU-funded grant over two years, with a title; one year reduced afterwards
    fund = sample(
        "ttc-fund-without-matching", application_id=f"IT-{run}-FUND", title="Sensor pilot", summary="A cross-border pilot line."
    )
    # an agency grant (no EU fund) and one withdrawn before any of its years opened
    spc = sample("vlaio-spearhead-2019", application_id=f"IT-{run}-SPC")
    gone = sample("ttc-voucher", application_id=f"IT-{run}-GONE")
    for application in (fund, spc, gone):
        await _store_application(pool, application)
    assert (
        await ledger.decide(
            decided(
                grant(eu_programme, {2031: 10_000_000, 2032: 5_000_000}, instrument="innovation-fund-grant", shares=EU_SHARES),
                scheme="ttc.innovation-fund",
                application_id=fund.application_id,
            ),
            cfg,
        )
        == "committed"
    )
    assert (
        await ledger.decide(decided(grant(agency_programme, {2031: 12_345_67}), application_id=spc.application_id), cfg)
        == "committed"
    )
    assert (
        await ledger.decide(
            decided(
                grant(eu_programme, {2033: 400_000}, instrument="innovation-fund-grant", shares=EU_SHARES),
                scheme="ttc.innovation-fund",
                application_id=gone.application_id,
            ),
            cfg,
        )
        == "committed"
    )
    await ledger.in_uow(lambda uow: handlers.release_grant(uow, fund.application_id, {2032: 2_000_000}, cause="t", config=cfg))
    await ledger.in_uow(lambda uow: handlers.release_grant(uow, gone.application_id, None, cause="t", config=cfg))

    ours = [fund.application_id, spc.application_id, gone.application_id]
    async with pool.acquire() as conn:
        grants = await opendata.load_committed(conn, application_ids=ours)
        assert [g.application_id for g in await opendata.load_committed(conn, programmes=[agency_programme])] == [
            spc.application_id
        ]
    plain = await asyncpg.connect(database_url)  # as `clustergrants` connects: jsonb arrives as text
    try:
        assert await opendata.load_committed(plain, application_ids=ours) == grants
    finally:
        await plain.close()
    by_id = {g.application_id: g for g in grants}
    assert set(by_id) == {fund.application_id, spc.application_id}  # the withdrawn one has nothing left
    assert by_id[fund.application_id].amounts == ((2031, 10_000_000), (2032, 2_000_000))
    assert by_id[fund.application_id].application.title == "Sensor pilot"

    settings = _config(eu_programme, agency_programme)
    assert opendata.write_360giving(grants, settings, tmp_path / "grants.json", fmt="json") == 2
    package = json.loads((tmp_path / "grants.json").read_text(encoding="utf-8"), parse_float=Decimal)
    assert_valid(package)
    items: dict[str, dict[str, Any]] = {g["id"]: g for g in package["grants"]}
    eu_item = items[f"360G-test-{fund.application_id}"]
    assert eu_item["amountAwarded"] == Decimal("120000.00")
    assert str(eu_item["amountAwarded"]) == "120000.00"
    assert eu_item["plannedDates"] == [{"startDate": "2031-01-01", "endDate": "2032-12-31"}]
    assert eu_item["awardDate"] == by_id[fund.application_id].committed_at.astimezone(UTC).date().isoformat()
    assert items[f"360G-test-{spc.application_id}"]["amountAwarded"] == Decimal("12345.67")

    assert opendata.write_360giving(grants, settings, tmp_path / "grants.csv", fmt="csv") == 2
    assert opendata.write_eu_operations(grants, settings, tmp_path / "operations.csv") == 1
    [operation] = list(csv.DictReader(io.StringIO((tmp_path / "operations.csv").read_text(encoding="utf-8"))))
    assert (
        operation["Operation code"],
        operation["Operation name"],
        operation["Total cost"],
        operation["Fund"],
        operation["Union co-financing rate (%)"],
        operation["Location"],
        operation["Country code"],
    ) == (f"TESTCCI-{fund.application_id}", "Sensor pilot", "120000.00", "ERDF", "50.00", "Hasselt", "BE")

    _assert_no_contact_data(tmp_path, [fund, spc])


def _assert_no_contact_data(folder: Path, applications: list[Application]) -> None:
    written = [path.read_text(encoding="utf-8") for path in folder.iterdir()]
    assert len(written) == 3
    for text in written:
        for application in applications:
            assert application.contact.name not in text and application.contact.email not in text


async def test_a_grant_without_its_application_record_is_refused(pool: asyncpg.Pool) -> None:
    ledger = Ledger(pool)
    programme = f"t{secrets.token_hex(4)}"
    cfg = config(programme_with_pots(programme, {"agency": 10**10}))
    await ledger.load(cfg)
    orphan = f"IT-{uuid.uuid4().hex[:8]}-ORPHAN"
    assert await ledger.decide(decided(grant(programme, {2031: 100}), application_id=orphan), cfg) == "committed"
    async with pool.acquire() as conn:
        with pytest.raises(OpenDataError, match=orphan):
            await opendata.load_committed(conn, programmes=[programme])
