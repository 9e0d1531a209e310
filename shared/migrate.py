"""Apply each service's SQL migrations (`services/<service>/migrations/NNN_*.sql`) once, in order,
and refuse to run when a file that was applied has changed since.

    python -m shared.migrate            # every service
    python -m shared.migrate budget     # one service
    clustergrants migrate --status      # applied / pending / changed, per service and file

Each file runs in its own transaction with its record in `public.schema_migrations`: the service,
the version (the file's name without `.sql`), when, and the SHA-256 of the SQL as it was executed
(for the shared templates in `shared/migrations/`, after `{schema}` is replaced). Before anything is
applied, every applied file of the services asked for is checked against its record; one that
differs stops the run with one line naming the file, and nothing is applied. A change to a schema
is a new file, never an edit of an applied one. An advisory lock lets several replicas (or a
Kubernetes Job and a developer) run this at once safely.

Databases migrated before checksums were recorded upgrade by themselves: the first run adds the
column and records the checksum of each applied file as it is now (it cannot know what an earlier
edit changed); from then on any edit is caught.

Why not a maintained tool: Alembic needs SQLAlchemy and Python revision scripts and records no
checksum of what it applied; yoyo-migrations runs plain SQL files but through a DB-API driver
(psycopg), a second PostgreSQL driver beside asyncpg; Flyway checksums applied files but needs a
JVM in the image and the Job. Per-service schemas rendered from one template fit none of them
directly. This module is small, uses asyncpg only, and is tested against the real PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from shared.db import Connection
from shared.settings import CommonSettings, database_ssl
from shared.topics import SERVICES as SERVICES  # re-exported: migrations run per service

ROOT = Path(__file__).resolve().parents[1]
LOCK_KEY = 727_001  # pg_advisory_lock key for migrations

SHARED_MIGRATIONS = ROOT / "shared" / "migrations"

State = Literal["applied", "pending", "changed", "unverified", "missing"]


class MigrationError(Exception):
    """A migration cannot run: an applied file changed (the message names it), or its SQL failed."""


def migration_files(service: str) -> list[Path]:
    """The shared templates (inbox/outbox, audit) first, then the service's own files."""
    own = sorted((ROOT / "services" / service / "migrations").glob("[0-9][0-9][0-9]_*.sql"))
    return sorted(SHARED_MIGRATIONS.glob("[0-9][0-9][0-9]_*.sql")) + own


def migration_sql(service: str, path: Path) -> str:
    sql = path.read_text()
    return sql.replace("{schema}", service) if path.parent == SHARED_MIGRATIONS else sql


def checksum(sql: str) -> str:
    return hashlib.sha256(sql.encode()).hexdigest()


def relative(path: Path) -> str:
    try:
        return path.relative_to(ROOT).as_posix()
    except ValueError:
        return path.as_posix()


@dataclass(frozen=True)
class FileStatus:
    service: str
    version: str
    file: str | None
    state: State
    applied_at: datetime | None = None
    recorded: str | None = None
    """The checksum recorded when the file was applied (None: recorded before checksums)."""
    current: str | None = None
    """The checksum of the file as it is now (None: the file is gone)."""

    def as_json(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "version": self.version,
            "file": self.file,
            "state": self.state,
            "applied_at": self.applied_at.isoformat() if self.applied_at else None,
            "recorded_sha256": self.recorded,
            "file_sha256": self.current,
        }

    def problem(self) -> str:
        if self.state == "changed":
            return (
                f"{self.file} was changed after it was applied to {self.service} (recorded sha256 {self.recorded:.12}, "
                f"now {self.current:.12}): restore it and put the change in a new migration file"
            )
        if self.state == "missing":
            return f"{self.service}/{self.version} was applied but its file is gone"
        return ""


_TABLE = """CREATE TABLE IF NOT EXISTS public.schema_migrations (
                service text NOT NULL, version text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now(), checksum text,
                PRIMARY KEY (service, version))"""


async def _has_table(conn: Connection) -> tuple[bool, bool]:
    """(schema_migrations exists, it has the checksum column)."""
    columns = await conn.fetch(
        """SELECT column_name FROM information_schema.columns
           WHERE table_schema = 'public' AND table_name = 'schema_migrations'"""
    )
    names = {r["column_name"] for r in columns}
    return bool(names), "checksum" in names


async def _applied(conn: Connection, service: str, with_checksum: bool) -> dict[str, tuple[str | None, datetime]]:
    column = "checksum" if with_checksum else "NULL::text AS checksum"
    rows = await conn.fetch(f"SELECT version, {column}, applied_at FROM public.schema_migrations WHERE service = $1", service)
    return {r["version"]: (r["checksum"], r["applied_at"]) for r in rows}


def _compare(service: str, applied: dict[str, tuple[str | None, datetime]]) -> list[FileStatus]:
    out: list[FileStatus] = []
    files = migration_files(service)
    for path in files:
        current = checksum(migration_sql(service, path))
        if path.stem not in applied:
            out.append(FileStatus(service, path.stem, relative(path), "pending", current=current))
            continue
        recorded, applied_at = applied[path.stem]
        state: State = "unverified" if recorded is None else "applied" if recorded == current else "changed"
        out.append(FileStatus(service, path.stem, relative(path), state, applied_at, recorded, current))
    known = {p.stem for p in files}
    for version, (recorded, applied_at) in sorted(applied.items()):
        if version not in known:
            out.append(FileStatus(service, version, None, "missing", applied_at, recorded))
    return out


def _connect_options(ssl: Any) -> dict[str, Any]:
    return {"ssl": ssl} if ssl is not None else {}


async def status(dsn: str, services: tuple[str, ...] = SERVICES, ssl: Any = None) -> list[FileStatus]:
    """Every migration file of `services` and what the database recorded for it. Reads only."""
    conn = await asyncpg.connect(dsn, timeout=10, **_connect_options(ssl))
    try:
        exists, with_checksum = await _has_table(conn)
        out: list[FileStatus] = []
        for service in services:
            out += _compare(service, await _applied(conn, service, with_checksum) if exists else {})
        return out
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def scratch_database(
    server: str, name: str, services: tuple[str, ...] = SERVICES, *, keep: bool = False
) -> AsyncIterator[str]:
    """A new database `name` on the server of the DSN `server`, migrated for `services`; its DSN while the
    block runs, dropped afterwards (unless `keep`). For tests and benchmarks, never for a service."""
    admin = await asyncpg.connect(server)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = urlunsplit(urlsplit(server)._replace(path=f"/{name}"))
    try:
        await migrate(url, services)
        yield url
    finally:
        if not keep:
            admin = await asyncpg.connect(server)
            try:
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            finally:
                await admin.close()


async def migrate(dsn: str, services: tuple[str, ...] = SERVICES, ssl: Any = None) -> list[str]:
    """Apply the pending files of `services`; MigrationError (nothing applied) if an applied file changed."""
    applied_now: list[str] = []
    conn = await asyncpg.connect(dsn, timeout=10, **_connect_options(ssl))
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", LOCK_KEY)
        try:
            await conn.execute(_TABLE)
            await conn.execute("ALTER TABLE public.schema_migrations ADD COLUMN IF NOT EXISTS checksum text")
            plans: list[tuple[str, list[FileStatus]]] = []
            for service in services:
                found = _compare(service, await _applied(conn, service, True))
                for s in found:
                    if s.state == "unverified":  # applied before checksums were recorded: record it now
                        await conn.execute(
                            "UPDATE public.schema_migrations SET checksum = $3 "
                            "WHERE service = $1 AND version = $2 AND checksum IS NULL",
                            service,
                            s.version,
                            s.current,
                        )
                changed = [s for s in found if s.state == "changed"]
                if changed:
                    raise MigrationError(changed[0].problem())
                plans.append((service, [s for s in found if s.state == "pending"]))
            for service, pending in plans:
                for s in pending:
                    path = ROOT / str(s.file)
                    sql = migration_sql(service, path)
                    try:
                        async with conn.transaction():
                            await conn.execute(sql)
                            await conn.execute(
                                "INSERT INTO public.schema_migrations (service, version, checksum) VALUES ($1, $2, $3)",
                                service,
                                s.version,
                                checksum(sql),
                            )
                    except asyncpg.PostgresError as error:
                        raise MigrationError(f"{s.file} failed for {service}: {type(error).__name__}: {error}") from None
                    applied_now.append(f"{service}/{s.version}")
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", LOCK_KEY)
    finally:
        await conn.close()
    return applied_now


def main() -> None:
    settings = CommonSettings()
    services = tuple(sys.argv[1:]) or SERVICES
    unknown = set(services) - set(SERVICES)
    if unknown:
        print(f"error: unknown service(s): {', '.join(sorted(unknown))}; known: {', '.join(SERVICES)}", file=sys.stderr)
        sys.exit(2)
    try:
        applied = asyncio.run(migrate(settings.database_url.get_secret_value(), services, database_ssl(settings)))
    except MigrationError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    print(f"migrations applied: {', '.join(applied) if applied else 'none (up to date)'}", file=sys.stderr)


if __name__ == "__main__":
    main()
