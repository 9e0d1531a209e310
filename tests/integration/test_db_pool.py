"""The pool hands out clean connections without asyncpg's reset statement (shared/db.py): a transaction
left open is still rolled back on release."""

from __future__ import annotations

import asyncio

from shared.db import create_pool


async def test_a_transaction_left_open_is_rolled_back_before_the_next_acquirer(database_url: str) -> None:
    pool = await create_pool(database_url, 1, 1)
    try:
        async with pool.acquire() as conn:
            await conn.execute("CREATE TEMP TABLE IF NOT EXISTS left_open (n int)")
            await conn.execute("BEGIN")
            await conn.execute("INSERT INTO left_open VALUES (1)")
            first = await conn.fetchval("SELECT pg_backend_pid()")
        async with pool.acquire() as conn:  # the same connection (pool of one)
            assert await conn.fetchval("SELECT pg_backend_pid()") == first
            assert not conn.is_in_transaction()
            assert await conn.fetchval("SELECT count(*) FROM left_open") == 0
    finally:
        await asyncio.wait_for(pool.close(), timeout=10)
