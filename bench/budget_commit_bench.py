"""The budget's cost per grant: SQL statements, PostgreSQL backend CPU and client CPU per committed
grant, one decision per transaction against a batch of decisions per transaction, on a fresh database.

    DATABASE_URL=postgresql://clustergrants@127.0.0.1:25432/clustergrants \\
        .venv/bin/python bench/budget_commit_bench.py [--grants 2000] [--batch 100]

Each decision is an eligible two-year VLAIO spearhead grant of its own cluster (so every grant also
passes the beneficiary ceilings), on one bench programme whose pot never runs out. `single`
commits each in its own transaction through `on_eligibility_decided`, as the service did before it
decided batches; `batch` hands `--batch` decisions at a time to `decide_batch`, as the runtime
does now. Statements are counted on the connection (an executemany counts one per row); CPU is
this process's `time.process_time()` and the backend's utime+stime from /proc/<pid>/stat. Runs
without `decide_batch` (an older checkout) measure `single` only. Bench figures, not documents'.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.budget import handlers, repository
from services.budget.config import DOCUMENT_FILE, BudgetFile, merge, read_file
from shared.db import create_pool
from shared.delivery import UnitOfWork
from shared.events import EligibilityDecided
from shared.logging import configure_logging
from shared.migrate import scratch_database

PROGRAMME = "bench.clusters"
SOURCE = "bench figure (not a document figure)"


class Counting:
    """A connection that counts the statements sent through it."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn
        self.statements = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    async def execute(self, *args: Any, **kw: Any) -> Any:
        self.statements += 1
        return await self._conn.execute(*args, **kw)

    async def executemany(self, sql: str, rows: Any, **kw: Any) -> Any:
        rows = list(rows)
        self.statements += len(rows)
        return await self._conn.executemany(sql, rows, **kw)

    async def fetch(self, *args: Any, **kw: Any) -> Any:
        self.statements += 1
        return await self._conn.fetch(*args, **kw)

    async def fetchrow(self, *args: Any, **kw: Any) -> Any:
        self.statements += 1
        return await self._conn.fetchrow(*args, **kw)

    async def fetchval(self, *args: Any, **kw: Any) -> Any:
        self.statements += 1
        return await self._conn.fetchval(*args, **kw)


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def decided(run: str, i: int) -> EligibilityDecided:
    beneficiary = f"BE-BCE_KBO-B{run}{i:07d}"
    return EligibilityDecided.model_validate(
        {
            "application_id": f"BENCH-{run}-{i}",
            "scheme": "vlaio.spearhead-cluster",
            "decided_at": "2020-06-01T00:00:00Z",
            "reference_date": "2020-06-01",
            "time_zone": "Europe/Brussels",
            "outcome": "eligible",
            "parameter_version": "bench",
            "criteria": [{"criterion": "bench", "outcome": "passed", "message_key": "bench"}],
            "beneficiary_id": beneficiary,
            "proposed_grant": {
                "programme": PROGRAMME,
                "instrument": "coordination-subsidy",
                "currency": "EUR",
                "schedule": [{"budget_year": y, "amount": {"amount_minor": 100_000_00, "currency": "EUR"}} for y in (2021, 2022)],
                "fund_shares": [{"fund": "agency", "numerator": 1, "denominator": 1}],
                "beneficiary_id": beneficiary,
            },
            "recipient": {"language": "nl", "contact": {"name": "Bench", "email": "bench@example.org"}, "organisation_name": "B"},
        }
    )


def unit_of_work(conn: Any) -> UnitOfWork[Any]:
    repo_class = getattr(repository, "LedgerRepository", None)
    repo = repo_class(conn) if repo_class is not None else None
    return UnitOfWork(conn=conn, schema="budget", source="/clustergrants/budget", repo=repo)


async def measure(pool: asyncpg.Pool, config: Any, mode: str, grants: int, batch: int) -> dict[str, float]:
    run = secrets.token_hex(3)
    async with pool.acquire() as raw:
        conn = Counting(raw)
        backend = await raw.fetchval("SELECT pg_backend_pid()")
        server0, client0, wall0 = cpu_s(backend), time.process_time(), time.perf_counter()
        size = 1 if mode == "single" else batch
        now = datetime.now(UTC)
        for first in range(0, grants, size):
            decisions = [decided(run, i) for i in range(first, min(first + size, grants))]
            async with raw.transaction():
                uow = unit_of_work(conn)
                if mode == "single":
                    for d in decisions:
                        result = await handlers.on_eligibility_decided(uow, d, config, cause=f"bench:{d.application_id}", now=now)
                        assert result == "committed", result
                else:
                    items = [handlers.Item(d, f"bench:{d.application_id}") for d in decisions]
                    results = await handlers.decide_batch(uow, items, config, now=now)
                    assert set(results) == {"committed"}, results
        wall = time.perf_counter() - wall0
        server, client = cpu_s(backend) - server0, time.process_time() - client0
    return {
        "statements_per_grant": conn.statements / grants,
        "server_cpu_ms_per_grant": server * 1000 / grants,
        "client_cpu_ms_per_grant": client * 1000 / grants,
        "wall_ms_per_grant": wall * 1000 / grants,
    }


async def main(grants: int, batch: int) -> None:
    configure_logging("budget-bench", "console", "WARNING")
    server = os.environ.get("DATABASE_URL", "postgresql://clustergrants@127.0.0.1:25432/clustergrants")
    name = f"cg_bench_{secrets.token_hex(4)}"
    async with scratch_database(server, name, ("budget",)) as url:
        operator = {
            "programmes": [{"programme": PROGRAMME, "currency": "EUR", "source": SOURCE}],
            "pots": [
                {"pot_id": f"{PROGRAMME}/agency", "programme": PROGRAMME, "fund": "agency", "currency": "EUR"}
                | {"total_minor": 10**15, "source": SOURCE}
            ],
        }
        config = merge(read_file(DOCUMENT_FILE), BudgetFile.model_validate(operator))
        pool = await create_pool(url, 1, 2)
        async with pool.acquire() as conn:
            await repository.load_config(conn, config)
        modes = ["single", "batch"] if hasattr(handlers, "decide_batch") else ["single"]
        figures = {mode: await measure(pool, config, mode, grants, batch) for mode in modes}
        await pool.close()
        print(f"{grants:,} grants per mode, batch of {batch}; per committed grant:")
        print(f"{'mode':<8} {'statements':>11} {'PostgreSQL CPU ms':>18} {'client CPU ms':>14} {'wall ms':>9}")
        for mode, f in figures.items():
            print(
                f"{mode:<8} {f['statements_per_grant']:>11.2f} {f['server_cpu_ms_per_grant']:>18.3f} "
                f"{f['client_cpu_ms_per_grant']:>14.3f} {f['wall_ms_per_grant']:>9.3f}"
            )
        if "batch" in figures:
            s, b = figures["single"], figures["batch"]
            print(
                f"ratio single/batch: statements {s['statements_per_grant'] / b['statements_per_grant']:.1f}x, "
                f"PostgreSQL CPU {s['server_cpu_ms_per_grant'] / b['server_cpu_ms_per_grant']:.1f}x, "
                f"client CPU {s['client_cpu_ms_per_grant'] / b['client_cpu_ms_per_grant']:.1f}x"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grants", type=int, default=2_000)
    parser.add_argument("--batch", type=int, default=100)
    args = parser.parse_args()
    asyncio.run(main(args.grants, args.batch))
