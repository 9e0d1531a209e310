"""Open data on the real PostgreSQL: grants committed, released and capped by the budget's own
handlers; the events they published (read from the budget's outbox, as the relay would send them)
and the applications' ApplicationReceived are projected by the open-data service's handlers; the
projection must hold what the ledger holds, in any order and with duplicates, and the exports
written from it are validated against the published 360Giving schema."""

from __future__ import annotations

import csv
import io
import json
import secrets
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from services.budget import handlers
from services.opendata import export as opendata
from services.opendata.export import OpenDataConfig, OpenDataError
from services.opendata.handlers import project
from services.opendata.repository import OpenDataRepository
from shared.events import Application, ApplicationReceived, Event, GrantCommitted, GrantReleased
from shared.money import Money
from tests.integration.budget.conftest import Ledger
from tests.unit.budget.builders import config, decided, grant, programme_with_pots
from tests.unit.test_opendata import assert_valid, sample

pytestmark = pytest.mark.integration

EU_SHARES = [("erdf", 2497011, 4994022), ("co-financing", 2497011, 4994022)]
PUBLISHED: dict[str, type[Event]] = {m.cloudevents_type(): m for m in (GrantCommitted, GrantReleased)}


def received(application: Application) -> tuple[str, Event]:
    event = ApplicationReceived(
        application_id=application.application_id, received_at=datetime.now(UTC), channel="http", application=application
    )
    return str(uuid.uuid4()), event


async def budget_events(pool: asyncpg.Pool, application_ids: Sequence[str]) -> list[tuple[str, Event]]:
    """What the budget published about these applications, in outbox order: (CloudEvents id, event)."""
    rows = await pool.fetch("SELECT headers, payload FROM budget.outbox ORDER BY id")
    events: list[tuple[str, Event]] = []
    for row in rows:
        raw = row["headers"]
        headers = dict(json.loads(raw) if isinstance(raw, str) else raw)
        model = PUBLISHED.get(headers.get("ce_type", ""))
        body = json.loads(bytes(row["payload"]))
        if model is not None and body.get("application_id") in application_ids:
            events.append((headers["ce_id"], model.model_validate(body)))
    return events


async def projected(pool: asyncpg.Pool, events: Sequence[tuple[str, Event]]) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await project(OpenDataRepository(conn), events)


async def ledger_amounts(pool: asyncpg.Pool, application_ids: Sequence[str]) -> dict[str, tuple[tuple[int, int], ...]]:
    """What the ledger holds per grant and budget year (its money slices), for comparison."""
    rows = await pool.fetch(
        """SELECT g.application_id, s.budget_year, sum(s.amount_minor)::bigint AS amount
           FROM budget.grants g JOIN budget.slices s ON s.grant_id = g.grant_id AND s.unit = g.currency
           WHERE g.application_id = ANY($1::text[])
           GROUP BY g.application_id, s.budget_year HAVING sum(s.amount_minor) > 0
           ORDER BY g.application_id, s.budget_year""",
        list(application_ids),
    )
    out: dict[str, list[tuple[int, int]]] = {}
    for r in rows:
        out.setdefault(r["application_id"], []).append((r["budget_year"], r["amount"]))
    return {k: tuple(v) for k, v in out.items()}


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


async def test_committed_grants_are_exported_from_the_projection_of_the_events(
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
    await ledger.in_uow(lambda uow: handlers.release_grant(uow, fund.application_id, {2032: 2_000_000}, cause="t"))
    await ledger.in_uow(lambda uow: handlers.release_grant(uow, gone.application_id, None, cause="t"))

    ours = [fund.application_id, spc.application_id, gone.application_id]
    events = [received(a) for a in (fund, spc, gone)] + await budget_events(pool, ours)
    assert sorted(type(e).__name__ for _, e in events).count("GrantReleased") == 2
    await projected(pool, events)
    async with pool.acquire() as conn:
        repo = OpenDataRepository(conn)
        grants = await repo.committed(application_ids=ours)
        assert [g.application_id for g in await repo.committed(programmes=[agency_programme])] == [spc.application_id]
    plain = await asyncpg.connect(database_url)  # as `clustergrants` connects: jsonb arrives as text
    try:
        assert await OpenDataRepository(plain).committed(application_ids=ours) == grants
    finally:
        await plain.close()
    by_id = {g.application_id: g for g in grants}
    assert set(by_id) == {fund.application_id, spc.application_id}  # the withdrawn one has nothing left
    assert by_id[fund.application_id].amounts == ((2031, 10_000_000), (2032, 2_000_000))
    assert {g.application_id: g.amounts for g in grants} == await ledger_amounts(pool, ours)
    assert by_id[fund.application_id].title == "Sensor pilot"

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


async def test_a_grant_whose_application_is_not_projected_yet_is_refused(pool: asyncpg.Pool) -> None:
    ledger = Ledger(pool)
    programme = f"t{secrets.token_hex(4)}"
    cfg = config(programme_with_pots(programme, {"agency": 10**10}))
    await ledger.load(cfg)
    orphan = f"IT-{uuid.uuid4().hex[:8]}-ORPHAN"
    assert await ledger.decide(decided(grant(programme, {2031: 100}), application_id=orphan), cfg) == "committed"
    await projected(pool, await budget_events(pool, [orphan]))
    async with pool.acquire() as conn:
        with pytest.raises(OpenDataError, match=f"{orphan}.*catching up"):
            await OpenDataRepository(conn).committed(programmes=[programme])
    await projected(pool, [received(sample("vlaio-spearhead-2019", application_id=orphan))])
    async with pool.acquire() as conn:
        assert [g.application_id for g in await OpenDataRepository(conn).committed(programmes=[programme])] == [orphan]


async def test_the_projection_holds_what_the_ledger_holds_in_any_order_with_caps_and_duplicates(pool: asyncpg.Pool) -> None:
    """Conditional Hermes grants capped when a year opens, a reduction and a withdrawal: the projection
    of the budget's events equals the ledger per grant and year, whether the releases come before
    their commitments (two topics) and whether a commitment comes twice under another id."""
    ledger = Ledger(pool)
    programme = f"t{secrets.token_hex(4)}"
    cfg = config(programme_with_pots(programme, {"hermes": 10**12}, yearly_maximum_required=True))
    await ledger.load(cfg)
    run = secrets.token_hex(4).upper()
    pacts = [sample("vlaio-cluster-pact-hermes", application_id=f"IT-{run}-P{i}") for i in range(4)]
    for i, pact in enumerate(pacts):
        per_year = (150_000_00 + i * 100_000_00, 300_000_00, 200_000_00)
        proposed = grant(
            programme,
            dict(zip((2041, 2042, 2043), per_year, strict=True)),
            instrument="hermes-earmark",
            shares=[("hermes", 1, 1)],
            conditional=True,
        )
        assert await ledger.decide(decided(proposed, scheme="vlaio.cluster-pact", application_id=pact.application_id), cfg) == (
            "committed"
        )
    maximum = Money(amount_minor=250_000_00, currency="EUR")
    outcome = await ledger.reset(programme, 2041, maximum)
    assert outcome is not None and outcome.capped == 2  # P1 (250k: not over) and P0 stay; P2, P3 capped
    await ledger.in_uow(lambda uow: handlers.release_grant(uow, pacts[0].application_id, {2043: 50_000_00}, cause="t"))
    await ledger.in_uow(lambda uow: handlers.release_grant(uow, pacts[1].application_id, None, cause="t"))
    assert await ledger.reset(programme, 2042, maximum) is not None  # caps P0, P2, P3 in 2042 (300k > 250k)

    ours = [p.application_id for p in pacts]
    events = await budget_events(pool, ours)
    reasons = sorted(e.reason for _, e in events if isinstance(e, GrantReleased))
    assert reasons == ["capped"] * 5 + ["reduced", "withdrawn"]
    releases = [x for x in events if isinstance(x[1], GrantReleased)]
    commitments = [x for x in events if isinstance(x[1], GrantCommitted)]
    again = [(str(uuid.uuid4()), commitments[0][1])]  # the same commitment re-published under another id
    await projected(pool, releases + releases[:1])  # releases before their commitments, one twice in the batch
    await projected(pool, releases[1:2])  # and one again in a later batch
    await projected(pool, [received(p) for p in pacts] + commitments + again)

    expected = await ledger_amounts(pool, ours)
    async with pool.acquire() as conn:
        grants = await OpenDataRepository(conn).committed(application_ids=ours)
    assert {g.application_id: g.amounts for g in grants} == expected
    assert expected[pacts[3].application_id] == ((2041, 250_000_00), (2042, 250_000_00), (2043, 200_000_00))
    assert pacts[1].application_id in expected  # withdrawn after 2041 opened: 2041 stays
    assert {g.application_id: g.status for g in grants}[pacts[1].application_id] == "withdrawn"
