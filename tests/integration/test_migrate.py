"""Migrations on the real PostgreSQL: each applied file's checksum is recorded; a run refuses, naming
the file and applying nothing, when an applied file changed; `clustergrants migrate --status` lists
applied / pending / changed; a database migrated before checksums upgrades by itself."""

from __future__ import annotations

import asyncio
import json
import secrets
import shutil
from pathlib import Path

import asyncpg
import pytest

from shared import migrate as migrations
from tests.cli_tools import clean_env, cli, one_error_line, write_stack_env
from tests.conftest import fresh_database

pytestmark = pytest.mark.integration


def copy_tree(target: Path) -> None:
    """The repository's migration files, in a tree of their own that the test may edit."""
    shutil.copytree(migrations.SHARED_MIGRATIONS, target / "shared" / "migrations")
    for service in migrations.SERVICES:
        shutil.copytree(migrations.ROOT / "services" / service / "migrations", target / "services" / service / "migrations")


def states(found: list[migrations.FileStatus]) -> dict[str, str]:
    return {f"{f.service}/{f.version}": f.state for f in found}


async def test_an_edited_applied_file_stops_the_run_and_nothing_is_applied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    copy_tree(tmp_path)
    monkeypatch.setattr(migrations, "ROOT", tmp_path)
    monkeypatch.setattr(migrations, "SHARED_MIGRATIONS", tmp_path / "shared" / "migrations")
    async with fresh_database(f"cg_migrate_{secrets.token_hex(4)}") as url:
        assert set(states(await migrations.status(url)).values()) == {"applied"}
        ledger = tmp_path / "services" / "budget" / "migrations" / "001_ledger.sql"
        original = ledger.read_text()
        ledger.write_text(original.replace("CHECK (total_minor >= 0)", "CHECK (total_minor >= -1)"))
        (ledger.parent / "099_next.sql").write_text("CREATE TABLE budget.next_thing (id integer PRIMARY KEY);\n")

        with pytest.raises(migrations.MigrationError) as refused:
            await migrations.migrate(url)
        message = str(refused.value)
        assert message.startswith("services/budget/migrations/001_ledger.sql was changed after it was applied to budget")
        assert "\n" not in message
        found = states(await migrations.status(url))
        assert found["budget/001_ledger"] == "changed"
        assert found["budget/099_next"] == "pending"  # refused before anything ran
        conn = await asyncpg.connect(url)
        try:
            assert await conn.fetchval("SELECT to_regclass('budget.next_thing')") is None
        finally:
            await conn.close()

        ledger.write_text(original)  # restored: the new file goes in as a file of its own
        assert await migrations.migrate(url) == ["budget/099_next"]
        assert set(states(await migrations.status(url)).values()) == {"applied"}


async def test_a_database_migrated_before_checksums_upgrades_without_manual_steps() -> None:
    async with fresh_database(f"cg_migrate_{secrets.token_hex(4)}") as url:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute("ALTER TABLE public.schema_migrations DROP COLUMN checksum")  # as the first version had it
        finally:
            await conn.close()
        assert set(states(await migrations.status(url)).values()) == {"unverified"}
        assert await migrations.migrate(url) == []  # nothing re-applied
        assert set(states(await migrations.status(url)).values()) == {"applied"}
        recorded = {f.version: f.recorded for f in await migrations.status(url, ("budget",))}
        assert recorded["001_ledger"] == migrations.checksum(
            (migrations.ROOT / "services/budget/migrations/001_ledger.sql").read_text()
        )


async def test_the_cli_shows_the_status_and_refuses_a_changed_file_in_one_line(tmp_path: Path) -> None:
    async with fresh_database(f"cg_migrate_{secrets.token_hex(4)}") as url:
        state = tmp_path / "state"
        write_stack_env(state, DATABASE_URL=url)
        env = clean_env(state)
        shown = await asyncio.to_thread(cli, env, "migrate", "--status", "--json")
        assert shown.returncode == 0, shown.stderr
        rows = json.loads(shown.stdout)
        assert {r["state"] for r in rows} == {"applied"}
        assert {r["file"] for r in rows} >= {"shared/migrations/000_delivery.sql", "services/budget/migrations/001_ledger.sql"}

        conn = await asyncpg.connect(url)
        try:
            await conn.execute(
                "UPDATE public.schema_migrations SET checksum = repeat('0', 64) WHERE service = 'notify' AND version = $1",
                "001_notifications",
            )
            await conn.execute("DELETE FROM public.schema_migrations WHERE service = 'eligibility' AND version = '002_calls'")
        finally:
            await conn.close()
        status = await asyncio.to_thread(cli, env, "migrate", "--status")
        assert status.returncode == 1
        assert "services/notify/migrations/001_notifications.sql was changed" in one_error_line(status)
        assert "changed" in status.stdout and "pending" in status.stdout
        as_json = await asyncio.to_thread(cli, env, "migrate", "--status", "--json")
        assert as_json.returncode == 1
        found = {(r["service"], r["version"]): r["state"] for r in json.loads(as_json.stdout)}
        assert found["notify", "001_notifications"] == "changed"
        assert found["eligibility", "002_calls"] == "pending"
        assert found["budget", "001_ledger"] == "applied"

        run = await asyncio.to_thread(cli, env, "migrate")
        assert run.returncode == 2
        assert one_error_line(run).startswith("error: services/notify/migrations/001_notifications.sql was changed")
        only_budget = await asyncio.to_thread(cli, env, "migrate", "budget", "--json")
        assert only_budget.returncode == 0 and json.loads(only_budget.stdout) == {"applied": []}, only_budget.stderr
