"""The audit trail on the real PostgreSQL: append-only in every service's schema; a competitive call
closed by an operator leaves one audit row and AuditRecorded with it; `clustergrants audit` lists
the trails of every service, filtered, as JSON clean for jq."""

from __future__ import annotations

import asyncio
import json
import secrets
from pathlib import Path

import asyncpg
import pytest

from shared.audit import SERVICES
from tests.cli_tools import clean_env, cli, one_error_line, write_stack_env

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("service", SERVICES)
async def test_audit_rows_cannot_be_changed_or_removed(pool: asyncpg.Pool, service: str) -> None:
    await pool.execute(
        f"""INSERT INTO {service}.audit (audit_id, operator, command, arguments, outcome, changes, event_id)
            VALUES (gen_random_uuid(), 'test', 'test', '{{}}', 'test', '{{}}', gen_random_uuid())"""
    )
    for statement in (
        f"UPDATE {service}.audit SET outcome = 'forged'",
        f"DELETE FROM {service}.audit",
        f"TRUNCATE {service}.audit",
    ):
        with pytest.raises(asyncpg.RaiseError, match=f"{service}.audit is append-only"):
            await pool.execute(statement)


async def test_closing_a_call_is_audited_with_its_selection_and_listed_by_clustergrants_audit(
    pool: asyncpg.Pool, database_url: str, tmp_path: Path
) -> None:
    call_id = f"audit-{secrets.token_hex(4)}"
    operator = f"officer-{secrets.token_hex(3)}"
    state = tmp_path / "state"
    write_stack_env(state, DATABASE_URL=database_url)
    env = clean_env(state, CLUSTERGRANTS_OPERATOR=operator)

    dry = await asyncio.to_thread(cli, env, "calls", "close-call", "s3.platform", call_id, "--cap", "2", "--dry-run")
    assert dry.returncode == 0 and "would close now" in dry.stdout, dry.stderr
    assert await pool.fetchval("SELECT count(*) FROM eligibility.calls WHERE call_id = $1", call_id) == 0

    closed = await asyncio.to_thread(cli, env, "calls", "close-call", "s3.platform", call_id, "--cap", "2", "--yes", "--json")
    assert closed.returncode == 0, closed.stderr
    result = json.loads(closed.stdout)
    assert (result["service"], result["outcome"], result["changes"]["cap"]) == ("eligibility", "closed", 2)
    assert await pool.fetchval("SELECT count(*) FROM eligibility.calls WHERE call_id = $1", call_id) == 1
    rows = await pool.fetch("SELECT * FROM eligibility.audit WHERE arguments->>'call_id' = $1", call_id)
    assert len(rows) == 1 and rows[0]["operator"] == operator and rows[0]["command"] == "calls close-call"
    kinds = await pool.fetch(
        "SELECT headers FROM eligibility.outbox WHERE convert_from(payload, 'UTF8') LIKE '%' || $1 || '%'", call_id
    )
    types = sorted(dict(h)["ce_type"] for h in (r["headers"] for r in kinds))
    assert types == ["org.clustergrants.audit.recorded.v1", "org.clustergrants.call.closed.v1"]

    again = await asyncio.to_thread(cli, env, "calls", "close-call", "s3.platform", call_id, "--yes")
    assert again.returncode == 0 and "closed before" in again.stdout, again.stderr

    refused = await asyncio.to_thread(cli, env, "calls", "close-call", "ttc.innovation-voucher", call_id, "--yes")
    assert refused.returncode == 2 and "not a competitive scheme" in one_error_line(refused)

    listed = await asyncio.to_thread(cli, env, "audit", "--operator", operator, "--json")
    assert listed.returncode == 0, listed.stderr
    trail = json.loads(listed.stdout)  # nothing but the JSON document on stdout
    assert [(r["service"], r["command"], r["outcome"]) for r in trail] == [
        ("eligibility", "calls close-call", "unchanged"),
        ("eligibility", "calls close-call", "closed"),
    ]
    assert trail[1]["arguments"] == {"scheme": "s3.platform", "call_id": call_id, "cap": 2}
    only_budget = await asyncio.to_thread(cli, env, "audit", "--operator", operator, "--service", "budget", "--json")
    assert json.loads(only_budget.stdout) == []
    table = await asyncio.to_thread(cli, env, "audit", "--operator", operator)
    assert table.returncode == 0 and "calls close-call" in table.stdout and operator in table.stdout
