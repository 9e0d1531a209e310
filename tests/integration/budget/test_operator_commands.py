"""The budget's operator commands on the real PostgreSQL, run as the operator runs them (a process
reading its connection from stack.env): a typo cannot open a year out of turn, `--dry-run` changes
nothing, a change needs a terminal's confirmation or --yes, and every change leaves exactly one
audit row, written in the transaction of its effect, with AuditRecorded beside it in the outbox."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.cli_tools import clean_env, cli, one_error_line, write_stack_env
from tests.integration.budget.conftest import Ledger
from tests.unit.budget.builders import config, decided, grant, programme_with_pots

pytestmark = pytest.mark.integration

OPERATOR = "test.operator"


def operator_env(tmp_path: Path, database_url: str, programme: str, currency: str = "NOK") -> dict[str, str]:
    pots = tmp_path / "pots.yaml"
    pots.write_text(
        f"programmes:\n  - {{programme: {programme}, currency: {currency}, source: test figure,\n"
        "     period: {first_year: 2030, last_year: 2032, source: test period}}\n"
    )
    state = tmp_path / "state"
    write_stack_env(state, DATABASE_URL=database_url, BUDGET_POTS_FILE=str(pots))
    return clean_env(state, CLUSTERGRANTS_OPERATOR=OPERATOR)


async def snapshot(pool: asyncpg.Pool, programme: str) -> dict[str, Any]:
    """Everything a budget command could change for `programme`."""
    return {
        "programme": dict(await pool.fetchrow("SELECT * FROM budget.programmes WHERE programme = $1", programme) or {}),
        "requests": await pool.fetchval("SELECT count(*) FROM budget.reset_requests WHERE programme = $1", programme),
        "audit": await pool.fetchval("SELECT count(*) FROM budget.audit WHERE arguments->>'programme' = $1", programme),
        "outbox": await pool.fetchval(
            "SELECT count(*) FROM budget.outbox WHERE convert_from(payload, 'UTF8') LIKE '%' || $1 || '%'", programme
        ),
        "entries": await pool.fetchval(
            "SELECT count(*) FROM budget.entries e JOIN budget.pots p USING (pot_id) WHERE p.programme = $1", programme
        ),
        "grants": [dict(r) for r in await pool.fetch("SELECT * FROM budget.grants WHERE programme = $1", programme)],
    }


async def audit_rows(pool: asyncpg.Pool, key: str, value: str) -> list[dict[str, Any]]:
    rows = await pool.fetch(f"SELECT * FROM budget.audit WHERE arguments->>'{key}' = $1 ORDER BY recorded_at", value)
    return [dict(r) for r in rows]


async def audit_events(ledger: Ledger, audit_id: str) -> list[dict[str, Any]]:
    return [e for e in await ledger.outbox("org.clustergrants.audit.recorded") if e["audit_id"] == audit_id]


async def test_open_year_accepts_only_the_next_year_of_the_period_and_audits_what_it_did(
    ledger: Ledger, programme: str, database_url: str, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    await ledger.load(config(programme_with_pots(programme, {"agency": 10_000_000}, currency="NOK")))
    env = operator_env(tmp_path, database_url, programme)
    before = await snapshot(pool, programme)

    # Typos and out-of-turn years are refused, one line each, and nothing changes.
    for year, why in (
        ("1800", "1800 lies outside the period"),
        ("2031", "the first to open is 2030"),
        ("2033", "2033 lies outside the period"),
    ):
        refused = await asyncio.to_thread(cli, env, "budget", "open-year", programme, year, "--yes")
        assert refused.returncode == 2 and why in one_error_line(refused), refused.stderr
    assert await snapshot(pool, programme) == before

    # Without --yes and without a terminal: refused, nothing changes.
    unconfirmed = await asyncio.to_thread(cli, env, "budget", "open-year", programme, "2030")
    assert unconfirmed.returncode == 2 and "without confirmation" in one_error_line(unconfirmed)
    # --dry-run shows what it would do (JSON clean for jq) and changes nothing.
    dry = await asyncio.to_thread(cli, env, "budget", "open-year", programme, "2030", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    shown = json.loads(dry.stdout)
    assert (shown["dry_run"], shown["outcome"], shown["audit_id"]) == (True, "requested", None)
    assert shown["changes"]["reset_id"] == f"{programme}/2030"
    assert await snapshot(pool, programme) == before

    done = await asyncio.to_thread(cli, env, "budget", "open-year", programme, "2030", "--yes", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert (result["dry_run"], result["outcome"]) == (False, "requested")
    after = await snapshot(pool, programme)
    assert (after["requests"], after["audit"]) == (before["requests"] + 1, before["audit"] + 1)
    rows = await audit_rows(pool, "programme", programme)
    assert len(rows) == 1
    row = rows[0]
    assert str(row["audit_id"]) == result["audit_id"]
    assert (row["operator"], row["command"], row["outcome"]) == (OPERATOR, "budget open-year", "requested")
    assert row["arguments"] == {"programme": programme, "budget_year": 2030, "yearly_maximum_minor": None}
    assert row["changes"]["reset_id"] == f"{programme}/2030"
    # The effect and its audit event were written by the same transaction: both are in the outbox.
    resets = [r for r in await ledger.outbox("org.clustergrants.budget.ceiling-reset") if r["programme"] == programme]
    events = await audit_events(ledger, result["audit_id"])
    assert len(resets) == 1 and len(events) == 1
    assert events[0]["service"] == "budget" and events[0]["operator"] == OPERATOR
    assert (
        await pool.fetchval("SELECT count(*) FROM budget.outbox WHERE event_id = $1", row["event_id"]) == 1
    )  # the row names its AuditRecorded

    # Once the service applied 2030, only 2031 is next.
    await ledger.reset(programme, 2030)
    skipped = await asyncio.to_thread(cli, env, "budget", "open-year", programme, "2032", "--yes")
    assert skipped.returncode == 2 and "only 2031 can be opened next" in one_error_line(skipped)
    assert len(await audit_rows(pool, "programme", programme)) == 1


async def test_release_dry_run_changes_nothing_and_the_release_leaves_one_audit_row_with_its_money(
    ledger: Ledger, programme: str, database_url: str, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    cfg = config(programme_with_pots(programme, {"agency": 10_000_000}, currency="NOK"))
    await ledger.load(cfg)
    commitment = decided(grant(programme, {2031: 1_234_567, 2032: 2_000_000}, currency="NOK"), scheme="nic.cluster")
    assert await ledger.decide(commitment, cfg) == "committed"
    app_id = commitment.application_id
    env = operator_env(tmp_path, database_url, programme)
    before = await snapshot(pool, programme)

    dry = await asyncio.to_thread(cli, env, "budget", "release", app_id, "--withdraw", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "dry run, nothing changed" in dry.stdout and "NOK 32,345.67 returned" in dry.stdout
    assert await snapshot(pool, programme) == before

    done = await asyncio.to_thread(cli, env, "budget", "release", app_id, "--withdraw", "--yes", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["outcome"] == "released"
    released = {(r["budget_year"], r["amount"]["amount_minor"]) for r in result["changes"]["released"]}
    assert released == {(2031, 1_234_567), (2032, 2_000_000)}
    rows = await audit_rows(pool, "application_id", app_id)
    assert [(r["outcome"], r["operator"], r["command"]) for r in rows] == [("released", OPERATOR, "budget release")]
    assert {(r["budget_year"], r["amount"]["amount_minor"]) for r in rows[0]["changes"]["released"]} == released
    after = await snapshot(pool, programme)
    assert after["entries"] > before["entries"]
    assert [g["status"] for g in after["grants"] if g["application_id"] == app_id] == ["withdrawn"]
    assert len(await audit_events(ledger, result["audit_id"])) == 1
    assert len(await ledger.outbox("org.clustergrants.grant.released", app_id)) == 1

    # Again: nothing left to return; recorded as such, no money moves.
    again = await asyncio.to_thread(cli, env, "budget", "release", app_id, "--withdraw", "--yes")
    assert again.returncode == 0 and "nothing to release" in again.stdout, again.stderr
    assert [r["outcome"] for r in await audit_rows(pool, "application_id", app_id)] == ["released", "unchanged"]
    assert (await snapshot(pool, programme))["entries"] == after["entries"]

    unknown = await asyncio.to_thread(cli, env, "budget", "release", "NO-SUCH-GRANT", "--withdraw", "--yes")
    assert unknown.returncode == 2 and "no committed grant" in one_error_line(unknown)
    assert await audit_rows(pool, "application_id", "NO-SUCH-GRANT") == []


async def test_on_a_terminal_the_operator_is_asked_and_no_means_nothing_changes(
    ledger: Ledger, programme: str, database_url: str, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    cfg = config(programme_with_pots(programme, {"agency": 10_000_000}, currency="NOK"))
    await ledger.load(cfg)
    commitment = decided(grant(programme, {2031: 500_000}, currency="NOK"), scheme="nic.cluster")
    assert await ledger.decide(commitment, cfg) == "committed"
    env = operator_env(tmp_path, database_url, programme)
    before = await snapshot(pool, programme)

    declined = await asyncio.to_thread(cli, env, "budget", "release", commitment.application_id, "--withdraw", answer="n\n")
    assert declined.returncode == 1, declined.stderr
    assert "this will be: grant of" in declined.stderr and "NOK 5,000.00 returned" in declined.stderr
    assert "not confirmed: nothing changed" in declined.stderr
    assert declined.stdout == ""
    assert await snapshot(pool, programme) == before

    accepted = await asyncio.to_thread(cli, env, "budget", "release", commitment.application_id, "--withdraw", answer="y\n")
    assert accepted.returncode == 0, accepted.stderr
    assert accepted.stdout.startswith("done: grant of")
    assert [r["outcome"] for r in await audit_rows(pool, "application_id", commitment.application_id)] == ["released"]
