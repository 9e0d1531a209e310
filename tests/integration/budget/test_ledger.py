"""The ledger on the real PostgreSQL: atomic commits under concurrency, counted limits, resets,
yearly maxima, releases and reconciliation."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from services.budget import handlers
from services.budget.domain import ReleaseError
from shared.delivery import PoisonMessage
from shared.money import Money
from tests.integration.budget.conftest import Ledger
from tests.unit.budget.builders import config, decided, grant, programme_with_pots

pytestmark = pytest.mark.integration

TTC_SHARES = [("erdf", 249701100, 499402200), ("co-financing", 249701100, 499402200)]
ROOT = Path(__file__).resolve().parents[3]


async def test_concurrent_commits_commit_exactly_as_many_as_fit(ledger: Ledger, programme: str) -> None:
    """40 grants of EUR 50,000 fired at once at a pot of EUR 470,000: exactly 9 fit."""
    cfg = config(programme_with_pots(programme, {"agency": 47_000_000}))
    await ledger.load(cfg)
    decisions = [decided(grant(programme, {2020: 5_000_000})) for _ in range(40)]
    results = await asyncio.gather(*(ledger.decide(d, cfg) for d in decisions))
    assert results.count("committed") == 9
    assert results.count("refused") == 31
    pot = await ledger.pot(f"{programme}/agency")
    assert (pot["committed_minor"], pot["released_minor"]) == (45_000_000, 0)
    refusals = await ledger.outbox("org.clustergrants.grant.refused")
    mine = [r for r in refusals if r["application_id"] in {d.application_id for d in decisions}]
    assert len(mine) == 31
    assert {(r["limit"], r["available"]["amount_minor"], r["requested"]["amount_minor"]) for r in mine} == {
        (f"pot:{programme}/agency", 2_000_000, 5_000_000)
    }
    assert await ledger.reconcile() == []


async def test_two_fund_commits_stop_at_the_smaller_pot_and_neither_goes_below_zero(ledger: Ledger, programme: str) -> None:
    """Shares 1/2 each; co-financing holds only 7 halves: exactly 7 of 30 concurrent grants commit."""
    cfg = config(programme_with_pots(programme, {"erdf": 10_000_000, "co": 7_000_000}))
    await ledger.load(cfg)
    shares = [("erdf", 1, 2), ("co", 1, 2)]
    decisions = [decided(grant(programme, {2020: 2_000_000}, shares=shares)) for _ in range(30)]
    results = await asyncio.gather(*(ledger.decide(d, cfg) for d in decisions))
    assert results.count("committed") == 7
    erdf, co = await ledger.pot(f"{programme}/erdf"), await ledger.pot(f"{programme}/co")
    assert (erdf["committed_minor"], co["committed_minor"]) == (7_000_000, 7_000_000)
    refused = await ledger.outbox("org.clustergrants.grant.refused")
    assert {r["limit"] for r in refused if r["application_id"] in {d.application_id for d in decisions}} == {
        f"pot:{programme}/co"
    }
    assert await ledger.reconcile() == []


async def test_ttc_vouchers_stop_at_35_under_concurrency_and_split_erdf_co_financing(ledger: Ledger) -> None:
    """The document's TTC figures: 50 concurrent EUR 5,000 vouchers, at most 35 committed."""
    cfg = config()
    await ledger.load(cfg)
    decisions = [
        decided(
            grant("ttc", {2015: 500_000}, instrument="innovation-voucher", shares=TTC_SHARES), scheme="ttc.innovation-voucher"
        )
        for _ in range(50)
    ]
    results = await asyncio.gather(*(ledger.decide(d, cfg) for d in decisions))
    assert results.count("committed") == 35
    count = await ledger.pot("ttc/innovation-voucher/count")
    erdf, co = await ledger.pot("ttc/erdf"), await ledger.pot("ttc/co-financing")
    assert count["committed_minor"] == 35
    assert erdf["committed_minor"] == co["committed_minor"] == 35 * 250_000
    refused = [
        r
        for r in await ledger.outbox("org.clustergrants.grant.refused")
        if r["application_id"] in {d.application_id for d in decisions}
    ]
    assert len(refused) == 15
    assert {(r["limit"], r["available_count"], r["requested_count"]) for r in refused} == {
        ("count:ttc/innovation-voucher/count", 0, 1)
    }
    assert await ledger.reconcile() == []


async def test_the_ledger_enforces_ceilings_itself_and_never_mixes_currencies(ledger: Ledger, programme: str) -> None:
    cfg = config(programme_with_pots(programme, {"agency": 10**12}))
    await ledger.load(cfg)
    # VLAIO's yearly ceiling caps ("maximum toegekende subsidie"): granted the ceiling, and it says so.
    over = decided(grant(programme, {2020: 500_000_01}), scheme="vlaio.spearhead-cluster")
    assert await ledger.decide(over, cfg) == "committed"
    [committed] = await ledger.outbox("org.clustergrants.grant.committed", over.application_id)
    [year] = committed["grant"]["schedule"]
    assert year["amount"] == {"amount_minor": 500_000_00, "currency": "EUR"}
    assert year["requested"] == {"amount_minor": 500_000_01, "currency": "EUR"}
    assert year["limited_by"] == "beneficiary-ceiling:vlaio.spearhead-cluster/yearly"
    # A per-grant ceiling no beneficiary ceiling covers still refuses (TTC innovation fund, EUR 250,000).
    fund = decided(grant(programme, {2020: 250_000_01}, instrument="innovation-fund-grant"), scheme="ttc.innovation-fund")
    assert await ledger.decide(fund, cfg) == "refused"
    [refusal] = await ledger.outbox("org.clustergrants.grant.refused", fund.application_id)
    assert refusal["limit"] == "grant-ceiling:ttc.innovation-fund/innovation-fund-grant"
    assert refusal["available"] == {"amount_minor": 250_000_00, "currency": "EUR"}
    sek = decided(grant(programme, {2020: 100}, currency="SEK"))
    assert await ledger.decide(sek, cfg) == "refused"
    [refusal] = await ledger.outbox("org.clustergrants.grant.refused", sek.application_id)
    assert refusal["message_key"] == "budget.currency_mismatch"
    assert (await ledger.pot(f"{programme}/agency"))["committed_minor"] == 500_000_00
    assert await ledger.reconcile() == []


async def test_same_decision_twice_commits_once(ledger: Ledger, programme: str) -> None:
    cfg = config(programme_with_pots(programme, {"agency": 10_000_000}))
    await ledger.load(cfg)
    decision = decided(grant(programme, {2020: 1_000_000}))
    assert await ledger.decide(decision, cfg, event_id="evt-1-" + programme) == "committed"
    assert await ledger.decide(decision, cfg, event_id="evt-1-" + programme) is None  # inbox: redelivery
    assert await ledger.decide(decision, cfg) == "skipped"  # re-emitted under a new event id
    assert (await ledger.pot(f"{programme}/agency"))["committed_minor"] == 1_000_000
    assert len(await ledger.outbox("org.clustergrants.grant.committed", decision.application_id)) == 1


async def test_reset_opens_each_year_once_and_a_closed_year_stays_closed(ledger: Ledger, programme: str) -> None:
    cfg = config(programme_with_pots(programme, {"agency": 100_000_000}))
    await ledger.load(cfg)
    first = decided(grant(programme, {2021: 1_000_000, 2022: 2_000_000, 2023: 3_000_000}))
    assert await ledger.decide(first, cfg) == "committed"

    opened = await ledger.reset(programme, 2021)
    assert opened is not None
    assert (opened.decision, opened.opened) == ("open", 1)
    again = await ledger.reset(programme, 2021)
    assert again is not None
    assert (again.decision, again.opened) == ("duplicate", 0)
    with pytest.raises(PoisonMessage, match="open the years in turn"):
        await ledger.reset(programme, 2023)
    second = await ledger.reset(programme, 2022)
    assert second is not None
    assert (second.decision, second.opened, second.closed) == ("open", 1, 1)
    earlier = await ledger.reset(programme, 2020)
    assert earlier is not None
    assert earlier.decision == "closed"

    rows = await ledger.pool.fetch(
        "SELECT s.budget_year, s.state FROM budget.slices s JOIN budget.grants g USING (grant_id) WHERE g.application_id = $1",
        first.application_id,
    )
    states: dict[int, str] = dict(rows)  # type: ignore[arg-type]  # each Record is a (budget_year, state) pair
    assert states == {2021: "closed", 2022: "open", 2023: "scheduled"}

    late = decided(grant(programme, {2021: 1_000, 2022: 1_000}))
    assert await ledger.decide(late, cfg) == "refused"
    [refusal] = await ledger.outbox("org.clustergrants.grant.refused", late.application_id)
    assert (refusal["limit"], refusal["message_key"]) == (f"year:{programme}/2021", "budget.year_closed")
    now = decided(grant(programme, {2022: 1_000, 2023: 1_000}))
    assert await ledger.decide(now, cfg) == "committed"
    opened_now = await ledger.pool.fetchval(
        "SELECT count(*) FROM budget.entries e JOIN budget.grants g USING (grant_id) "
        "WHERE g.application_id = $1 AND e.kind = 'open' AND e.budget_year = 2022",
        now.application_id,
    )
    assert opened_now == 1
    assert await ledger.reconcile() == []


async def test_hermes_yearly_maximum_applies_when_the_year_opens(ledger: Ledger, programme: str) -> None:
    """Conditional commitments over three years; each year's maximum comes with its reset."""
    cfg = config(programme_with_pots(programme, {"hermes": 200_000_000}, yearly_maximum_required=True))
    await ledger.load(cfg)
    pact = decided(
        grant(
            programme,
            {2021: 400_000_00, 2022: 400_000_00, 2023: 400_000_00},
            instrument="hermes-earmark",
            shares=[("hermes", 1, 1)],
            conditional=True,
        ),
        scheme="vlaio.cluster-pact",
    )
    small = decided(
        grant(programme, {2021: 100_000_00}, instrument="hermes-earmark", shares=[("hermes", 1, 1)], conditional=True),
        scheme="vlaio.cluster-pact",
    )
    assert await ledger.decide(pact, cfg) == "committed"
    assert await ledger.decide(small, cfg) == "committed"
    assert (await ledger.pot(f"{programme}/hermes"))["committed_minor"] == 1_300_000_00

    with pytest.raises(PoisonMessage, match="yearly maximum"):
        await ledger.reset(programme, 2021)
    outcome = await ledger.reset(programme, 2021, Money(amount_minor=250_000_00, currency="EUR"))
    assert outcome is not None
    assert (outcome.opened, outcome.capped, outcome.capped_minor) == (2, 1, 150_000_00)
    pot = await ledger.pot(f"{programme}/hermes")
    assert (pot["committed_minor"], pot["released_minor"]) == (1_300_000_00, 150_000_00)
    # The capped grant (and only it) is told by a GrantReleased: the topics hold what the ledger holds.
    [capped] = await ledger.outbox("org.clustergrants.grant.released", pact.application_id)
    assert capped["reason"] == "capped"
    returned = {"budget_year": 2021, "fund": "hermes", "amount": {"amount_minor": 150_000_00, "currency": "EUR"}}
    assert capped["released"] == [returned]
    assert [(r["budget_year"], r["amount"]["amount_minor"]) for r in capped["remaining"]] == [
        (2021, 250_000_00),
        (2022, 400_000_00),
        (2023, 400_000_00),
    ]
    assert await ledger.outbox("org.clustergrants.grant.released", small.application_id) == []

    over = decided(
        grant(programme, {2021: 250_000_01}, instrument="hermes-earmark", shares=[("hermes", 1, 1)], conditional=True),
        scheme="vlaio.cluster-pact",
    )
    assert await ledger.decide(over, cfg) == "refused"
    [refusal] = await ledger.outbox("org.clustergrants.grant.refused", over.application_id)
    assert refusal["limit"] == f"yearly-maximum:{programme}/2021"
    assert refusal["available"]["amount_minor"] == 250_000_00
    with pytest.raises(PoisonMessage, match="EUR"):
        await ledger.reset(programme, 2022, Money(amount_minor=1, currency="SEK"))
    assert await ledger.reconcile() == []


async def test_withdrawal_and_reduction_return_future_slices_as_entries(ledger: Ledger, programme: str) -> None:
    cfg = config(
        programme_with_pots(
            programme,
            {"agency": 50_000_000},
            counts=[
                {"pot_id": f"{programme}/count", "programme": programme, "instruments": ["coordination-subsidy"], "max_count": 5}
            ],
        )
    )
    await ledger.load(cfg)
    withdrawn = decided(grant(programme, {2021: 1_000_000, 2022: 2_000_000, 2023: 3_000_000}))
    reduced = decided(grant(programme, {2022: 4_000_000, 2023: 4_000_000}))
    assert await ledger.decide(withdrawn, cfg) == "committed"
    assert await ledger.decide(reduced, cfg) == "committed"
    assert (await ledger.reset(programme, 2021)) is not None

    event = await ledger.in_uow(lambda uow: handlers.release_grant(uow, withdrawn.application_id, None, cause="t"))
    assert event is not None
    assert {(r.budget_year, r.amount.amount_minor) for r in event.released} == {(2022, 2_000_000), (2023, 3_000_000)}
    assert [(s.budget_year, s.amount.amount_minor) for s in event.remaining] == [(2021, 1_000_000)]
    again = await ledger.in_uow(lambda uow: handlers.release_grant(uow, withdrawn.application_id, None, cause="t"))
    assert again is None
    count = await ledger.pot(f"{programme}/count")
    assert (count["committed_minor"], count["released_minor"]) == (2, 0)  # 2021's grant had its year opened

    cut = await ledger.in_uow(lambda uow: handlers.release_grant(uow, reduced.application_id, {2023: 1_500_000}, cause="t"))
    assert cut is not None
    assert [(r.budget_year, r.amount.amount_minor) for r in cut.released] == [(2023, 2_500_000)]
    with pytest.raises(ReleaseError, match="raise"):
        await ledger.in_uow(lambda uow: handlers.release_grant(uow, reduced.application_id, {2022: 5_000_000}, cause="t"))
    assert (await ledger.reset(programme, 2022)) is not None
    count_before = (await ledger.pot(f"{programme}/count"))["released_minor"]
    with pytest.raises(ReleaseError, match="already opened"):
        await ledger.in_uow(lambda uow: handlers.release_grant(uow, reduced.application_id, {2022: 0}, cause="t"))

    pot = await ledger.pot(f"{programme}/agency")
    assert pot["committed_minor"] == 14_000_000
    assert pot["released_minor"] == 2_000_000 + 3_000_000 + 2_500_000
    assert (await ledger.pot(f"{programme}/count"))["released_minor"] == count_before
    released = await ledger.outbox("org.clustergrants.grant.released")
    assert {r["application_id"] for r in released} >= {withdrawn.application_id, reduced.application_id}
    assert await ledger.reconcile() == []


async def test_withdrawing_a_grant_before_its_year_opens_returns_its_count(ledger: Ledger, programme: str) -> None:
    cfg = config(
        programme_with_pots(
            programme,
            {"agency": 10_000_000},
            counts=[{"pot_id": f"{programme}/count", "programme": programme, "instruments": ["voucher"], "max_count": 1}],
        )
    )
    await ledger.load(cfg)
    first = decided(grant(programme, {2024: 1_000}, instrument="voucher"))
    second = decided(grant(programme, {2024: 1_000}, instrument="voucher"))
    assert await ledger.decide(first, cfg) == "committed"
    assert await ledger.decide(decided(grant(programme, {2024: 1_000}, instrument="voucher")), cfg) == "refused"
    await ledger.in_uow(lambda uow: handlers.release_grant(uow, first.application_id, None, cause="t"))
    assert await ledger.decide(second, cfg) == "committed"
    assert await ledger.reconcile() == []


async def test_entries_are_append_only(ledger: Ledger) -> None:
    with pytest.raises(asyncpg.RaiseError, match="append-only"):
        await ledger.pool.execute("UPDATE budget.entries SET amount_minor = amount_minor + 1")
    with pytest.raises(asyncpg.RaiseError, match="append-only"):
        await ledger.pool.execute("DELETE FROM budget.entries")


def cli(database_url: str, *args: str, pots_file: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": database_url, "CLUSTERGRANTS_OPERATOR": "ledger-test"}
    if pots_file is not None:
        env["BUDGET_POTS_FILE"] = str(pots_file)
    return subprocess.run(
        [sys.executable, "-m", "services.budget.cli", *args],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_operator_commands_balances_reconcile_open_year(
    ledger: Ledger, programme: str, database_url: str, tmp_path: Path
) -> None:
    cfg = config(programme_with_pots(programme, {"agency": 10_000_000}, currency="NOK"))
    await ledger.load(cfg)
    nok = decided(grant(programme, {2030: 1_234_567}, currency="NOK"), scheme="nic.cluster")
    assert await ledger.decide(nok, cfg) == "committed"

    shown = await asyncio.to_thread(cli, database_url, "balances", "--programme", programme)
    assert shown.returncode == 0, shown.stderr
    lines = [line.split() for line in shown.stdout.splitlines() if line.strip().startswith(f"{programme}/agency")]
    assert lines[0] == [f"{programme}/agency", "NOK", "all", "100,000.00", "12,345.67", "0.00", "87,654.33"]
    assert lines[1] == [f"{programme}/agency", "NOK", "2030", "12,345.67", "0.00", "12,345.67", "0.00"]

    ok = await asyncio.to_thread(cli, database_url, "reconcile")
    assert ok.returncode == 0, ok.stderr
    await ledger.pool.execute(
        "UPDATE budget.pots SET committed_minor = committed_minor + 1 WHERE pot_id = $1", f"{programme}/agency"
    )
    try:
        broken = await asyncio.to_thread(cli, database_url, "reconcile")
        assert broken.returncode == 1
        assert "RECONCILIATION FAILED" in broken.stderr
        assert f"{programme}/agency" in broken.stderr
    finally:
        await ledger.pool.execute(
            "UPDATE budget.pots SET committed_minor = committed_minor - 1 WHERE pot_id = $1", f"{programme}/agency"
        )
    assert await ledger.reconcile() == []

    # open-year goes through the outbox, once per programme and year. The CLI reads the operator
    # file, so it gets one naming this test's programme.
    operator = tmp_path / "pots.yaml"
    operator.write_text(
        f"programmes:\n  - {{programme: {programme}, currency: NOK, source: test figure,\n"
        "     period: {first_year: 2030, last_year: 2035, source: test period}}\n"
    )
    first = await asyncio.to_thread(cli, database_url, "open-year", programme, "2030", "--yes", pots_file=operator)
    second = await asyncio.to_thread(cli, database_url, "open-year", programme, "2030", "--yes", pots_file=operator)
    assert "CeilingReset" in first.stdout and "requested" in first.stdout, first.stderr
    assert "was requested before" in second.stdout, second.stderr
    resets = [r for r in await ledger.outbox("org.clustergrants.budget.ceiling-reset") if r["programme"] == programme]
    assert len(resets) == 1
    assert resets[0]["reset_id"] == f"{programme}/2030"
