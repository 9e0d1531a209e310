"""The asyncpg pool: one per process, built by the composition root."""

from __future__ import annotations

import json
from typing import Any, TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

# What repositories are handed: a connection, or the pool's proxy of one (asyncpg's `pool.acquire()`),
# which forwards every method to the connection it holds.
Connection: TypeAlias = asyncpg.Connection | PoolConnectionProxy


async def _init_connection(conn: Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    await conn.set_type_codec("json", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def _keep_session(conn: asyncpg.Connection) -> None:
    """What a connection needs before it goes back to the pool, beyond what asyncpg always does (roll
    back a transaction left open, drop listeners): nothing. The services keep no session state (no
    LISTEN, no SET, no cursor outside a transaction; the outbox relay's session lock is released or its
    connection terminated, shared/delivery.py), so asyncpg's default reset statement (advisory unlock,
    CLOSE ALL, UNLISTEN, RESET ALL) would be one more round trip per transaction for nothing."""


async def create_pool(dsn: str, min_size: int = 2, max_size: int = 10, ssl: Any = None) -> asyncpg.Pool:
    """`ssl`: None (as the DSN says), a mode name, or an SSLContext (see shared.settings.database_ssl)."""
    options: dict[str, Any] = {"ssl": ssl} if ssl is not None else {}
    pool = await asyncpg.create_pool(
        dsn, min_size=min_size, max_size=max_size, init=_init_connection, reset=_keep_session, **options
    )
    assert pool is not None
    return pool
