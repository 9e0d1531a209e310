"""Time the yearly ceiling reset of a programme with 100,000 grants, on a fresh database.

    DATABASE_URL=postgresql://clustergrants@127.0.0.1:25432/clustergrants \\
        .venv/bin/python bench/budget_reset_bench.py [--grants 100000] [--keep]

Creates a database `cg_bench_<random>` on the server of DATABASE_URL, migrates it, and commits
--grants conditional three-year grants (2021-2023) to one bench programme. A sample goes through
the real handler (`on_eligibility_decided`, one transaction each, to time commits); the rest are
written set-based in the same shape (grant, slices, commit entries, pot balance). Then it opens
2021 and 2022 through the real reset handler (`on_ceiling_reset`, the code the Kafka consumer
runs), each with a yearly maximum that caps about half of the slices, and checks the ledger
reconciles. Prints the figures. The programme and its totals are bench figures, not documents'.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.budget import handlers, repository, views
from services.budget.config import DOCUMENT_FILE, BudgetFile, merge, read_file
from services.budget.repository import LedgerRepository
from shared.db import Connection, create_pool
from shared.delivery import UnitOfWork
from shared.events import CeilingReset, EligibilityDecided
from shared.logging import configure_logging
from shared.migrate import scratch_database
from shared.money import Money

PROGRAMME = "bench.hermes"
POT = f"{PROGRAMME}/hermes"
YEARS = (2021, 2022, 2023)
SAMPLE = 2_000  # grants committed through the real handler


def decided(i: int) -> EligibilityDecided:
    amount = 200_000_00 + (i % 100) * 1_000_00  # EUR 200,000 .. 299,000 a year
    return EligibilityDecided.model_validate(
        {
            "application_id": f"BENCH-{i}",
            "scheme": "vlaio.cluster-pact",
            "decided_at": "2020-06-01T00:00:00Z",
            "reference_date": "2020-06-01",
            "time_zone": "Europe/Brussels",
            "outcome": "eligible",
            "parameter_version": "bench",
            "criteria": [{"criterion": "bench", "outcome": "passed", "message_key": "bench"}],
            "proposed_grant": {
                "programme": PROGRAMME,
                "instrument": "hermes-earmark",
                "currency": "EUR",
                "conditional": True,
                "schedule": [{"budget_year": y, "amount": {"amount_minor": amount, "currency": "EUR"}} for y in YEARS],
                "fund_shares": [{"fund": "hermes", "numerator": 1, "denominator": 1}],
            },
            "recipient": {
                "language": "nl",
                "contact": {"name": "Bench", "email": "bench@example.org"},
                "organisation_name": "Bench",
            },
        }
    )


async def bulk_commit(conn: Connection, first: int, last: int) -> None:
    """Grants first..last in the shape the handler writes, set-based (the bench's set-up only)."""
    async with conn.transaction():
        await conn.execute(
            """INSERT INTO budget.grants (grant_id, application_id, scheme, programme, instrument, currency,
                                          conditional, fund_shares, status, grant_json, committed_at, updated_at)
               SELECT gen_random_uuid(), 'BENCH-' || i, 'vlaio.cluster-pact', $1, 'hermes-earmark', 'EUR', true,
                      '[["hermes", 1, 1]]'::jsonb, 'committed', '{"bench": true}'::jsonb, now(), now()
               FROM generate_series($2::int, $3::int) AS i""",
            PROGRAMME,
            first,
            last,
        )
        await conn.execute(
            """INSERT INTO budget.slices (grant_id, pot_id, budget_year, programme, unit, fund, amount_minor, state)
               SELECT g.grant_id, $2, y, $1, 'EUR', 'hermes',
                      20000000 + (substring(g.application_id from 7)::int % 100) * 100000, 'scheduled'
               FROM budget.grants g CROSS JOIN unnest($4::int[]) AS y
               WHERE g.programme = $1 AND substring(g.application_id from 7)::int BETWEEN $3 AND $5""",
            PROGRAMME,
            POT,
            first,
            list(YEARS),
            last,
        )
        await conn.execute(
            """INSERT INTO budget.entries (pot_id, grant_id, kind, budget_year, amount_minor, unit, reason, cause,
                                           created_at)
               SELECT s.pot_id, s.grant_id, 'commit', s.budget_year, s.amount_minor, s.unit, 'committed', 'bench', now()
               FROM budget.slices s JOIN budget.grants g USING (grant_id)
               WHERE s.programme = $1 AND substring(g.application_id from 7)::int BETWEEN $2 AND $3""",
            PROGRAMME,
            first,
            last,
        )
        await conn.execute(
            """UPDATE budget.pots SET committed_minor = (SELECT sum(amount_minor) FROM budget.slices WHERE pot_id = $1)
               WHERE pot_id = $1""",
            POT,
        )


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of process `pid` so far (/proc/<pid>/stat, fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


LAST_CPU: dict[str, float] = {}


async def reset(pool: asyncpg.Pool, year: int, maximum: int) -> tuple[float, handlers.ResetOutcome]:
    event = CeilingReset(
        reset_id=f"{PROGRAMME}/{year}",
        programme=PROGRAMME,
        budget_year=year,
        opened_at=datetime.now(UTC),
        yearly_maximum=Money(amount_minor=maximum, currency="EUR"),
    )
    async with pool.acquire() as conn:
        backend = await conn.fetchval("SELECT pg_backend_pid()")
        server_before, client_before = cpu_s(backend), time.process_time()
        started = time.perf_counter()
        async with conn.transaction():
            uow = UnitOfWork(conn=conn, schema="budget", source="/clustergrants/budget", repo=LedgerRepository(conn))
            outcome = await handlers.on_ceiling_reset(uow, event, cause=f"bench:{uuid.uuid4()}")
        elapsed = time.perf_counter() - started
        LAST_CPU["server"], LAST_CPU["client"] = cpu_s(backend) - server_before, time.process_time() - client_before
    return elapsed, outcome


async def main(grants: int, keep: bool) -> None:
    configure_logging("budget-bench", "console", "WARNING")
    server = os.environ.get("DATABASE_URL", "postgresql://clustergrants@127.0.0.1:25432/clustergrants")
    name = f"cg_bench_{secrets.token_hex(4)}"
    async with scratch_database(server, name, ("budget",), keep=keep) as url:
        config = merge(
            read_file(DOCUMENT_FILE),
            BudgetFile.model_validate(
                {
                    "programmes": [
                        {
                            "programme": PROGRAMME,
                            "currency": "EUR",
                            "yearly_maximum_required": True,
                            "source": "bench figure (not a document figure)",
                        }
                    ],
                    "pots": [
                        {
                            "pot_id": POT,
                            "programme": PROGRAMME,
                            "fund": "hermes",
                            "currency": "EUR",
                            "total_minor": 10**14,
                            "source": "bench figure (not a document figure)",
                        }
                    ],
                }
            ),
        )
        pool = await create_pool(url, 2, 10)
        async with pool.acquire() as conn:
            await repository.load_config(conn, config)

        sample = min(SAMPLE, grants)
        started = time.perf_counter()

        async def commit(i: int) -> None:
            async with pool.acquire() as conn, conn.transaction():
                uow = UnitOfWork(conn=conn, schema="budget", source="/clustergrants/budget", repo=LedgerRepository(conn))
                result = await handlers.on_eligibility_decided(uow, decided(i), config, cause=f"bench:{i}")
                assert result == "committed", result

        for batch in range(1, sample + 1, 8):
            await asyncio.gather(*(commit(i) for i in range(batch, min(batch + 8, sample + 1))))
        handler_s = time.perf_counter() - started
        print(
            f"commits through the handler: {sample:,} grants in {handler_s:.2f} s "
            f"({sample / handler_s:,.0f} grants/s, 8 concurrent, one transaction each)"
        )

        started = time.perf_counter()
        async with pool.acquire() as conn:
            for first in range(sample + 1, grants + 1, 20_000):
                await bulk_commit(conn, first, min(first + 19_999, grants))
            await conn.execute("ANALYZE budget.slices; ANALYZE budget.grants; ANALYZE budget.entries")
            count = await conn.fetchval("SELECT count(*) FROM budget.grants WHERE programme = $1", PROGRAMME)
        print(f"set-up: {count:,} grants ({count * len(YEARS):,} slices) in {time.perf_counter() - started:.1f} s")
        assert count == grants

        for year in YEARS[:2]:
            seconds, outcome = await reset(pool, year, 250_000_00)
            print(
                f"reset {PROGRAMME}/{year}: {seconds:.2f} s in one transaction; slices opened {outcome.opened:,}, "
                f"capped at EUR 250,000: {outcome.capped:,} (EUR {outcome.capped_minor // 100:,} released), "
                f"closed {outcome.closed:,}; CPU: PostgreSQL backend {LAST_CPU['server']:.2f} s, "
                f"client {LAST_CPU['client'] * 1000:.0f} ms"
            )
        seconds, again = await reset(pool, YEARS[1], 250_000_00)
        print(f"the same reset again: {again.decision} in {seconds * 1000:.1f} ms")

        started = time.perf_counter()
        async with pool.acquire() as conn:
            problems = await views.reconcile(conn)
        print(f"reconcile: {'ok' if not problems else f'{len(problems)} differences'} in {time.perf_counter() - started:.2f} s")
        await pool.close()
        if problems:
            raise SystemExit(1)
    if keep:
        print(f"kept database {name}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grants", type=int, default=100_000)
    parser.add_argument("--keep", action="store_true", help="Keep the bench database.")
    args = parser.parse_args()
    asyncio.run(main(args.grants, args.keep))
