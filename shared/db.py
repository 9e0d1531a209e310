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


async def create_pool(dsn: str, min_size: int = 2, max_size: int = 10, ssl: Any = None) -> asyncpg.Pool:
    """`ssl`: None (as the DSN says), a mode name, or an SSLContext (see shared.settings.database_ssl)."""
    options: dict[str, Any] = {"ssl": ssl} if ssl is not None else {}
    pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size, init=_init_connection, **options)
    assert pool is not None
    return pool
