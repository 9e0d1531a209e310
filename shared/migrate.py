"""Apply each service's SQL migrations (`services/<service>/migrations/NNN_*.sql`) once, in order.

    python -m shared.migrate            # every service
    python -m shared.migrate budget     # one service

Each file runs in its own transaction with its record in `public.schema_migrations`; an advisory
lock lets several replicas (or a Kubernetes Job and a developer) run this at once safely.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import asyncpg

from shared.settings import CommonSettings, database_ssl

ROOT = Path(__file__).resolve().parents[1]
SERVICES = ("intake", "eligibility", "budget", "notify")
LOCK_KEY = 727_001  # pg_advisory_lock key for migrations


SHARED_MIGRATIONS = ROOT / "shared" / "migrations"


def migration_files(service: str) -> list[Path]:
    """The shared inbox/outbox template first, then the service's own files."""
    own = sorted((ROOT / "services" / service / "migrations").glob("[0-9][0-9][0-9]_*.sql"))
    return sorted(SHARED_MIGRATIONS.glob("[0-9][0-9][0-9]_*.sql")) + own


def migration_sql(service: str, path: Path) -> str:
    sql = path.read_text()
    return sql.replace("{schema}", service) if path.parent == SHARED_MIGRATIONS else sql


async def migrate(dsn: str, services: tuple[str, ...] = SERVICES, ssl: Any = None) -> list[str]:
    applied: list[str] = []
    conn = await asyncpg.connect(dsn, **({"ssl": ssl} if ssl is not None else {}))
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", LOCK_KEY)
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS public.schema_migrations (
                   service text NOT NULL, version text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (service, version))"""
        )
        for service in services:
            done = {
                r["version"] for r in await conn.fetch("SELECT version FROM public.schema_migrations WHERE service = $1", service)
            }
            for path in migration_files(service):
                if path.stem in done:
                    continue
                async with conn.transaction():
                    await conn.execute(migration_sql(service, path))
                    await conn.execute(
                        "INSERT INTO public.schema_migrations (service, version) VALUES ($1, $2)", service, path.stem
                    )
                applied.append(f"{service}/{path.stem}")
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", LOCK_KEY)
        await conn.close()
    return applied


def main() -> None:
    settings = CommonSettings()
    services = tuple(sys.argv[1:]) or SERVICES
    unknown = set(services) - set(SERVICES)
    if unknown:
        sys.exit(f"unknown service(s): {', '.join(sorted(unknown))}; known: {', '.join(SERVICES)}")
    applied = asyncio.run(migrate(settings.database_url.get_secret_value(), services, database_ssl(settings)))
    print(f"migrations applied: {', '.join(applied) if applied else 'none (up to date)'}", file=sys.stderr)


if __name__ == "__main__":
    main()
