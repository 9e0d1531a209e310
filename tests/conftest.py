"""Fixtures for tests that talk to the real Kafka and PostgreSQL that `make test` starts.

Each test session gets its own database (created, migrated, dropped) and its own topic prefix on
the shared broker, so runs never see each other's data.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from shared.db import create_pool
from shared.kafka_admin import create_topics
from shared.migrate import migrate

ROOT = Path(__file__).resolve().parents[1]


def _require(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"{name} is not set: integration and e2e tests run under `make test`, which starts Kafka and PostgreSQL")
    return value


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    return _require("KAFKA_BOOTSTRAP_SERVERS")


@pytest.fixture(scope="session")
def run_id() -> str:
    return secrets.token_hex(4)


@contextlib.asynccontextmanager
async def fresh_database(name: str) -> AsyncIterator[str]:
    """A new, migrated database on the server of DATABASE_URL; dropped afterwards."""
    server = _require("DATABASE_URL")
    admin = await asyncpg.connect(server)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = urlunsplit(urlsplit(server)._replace(path=f"/{name}"))
    await migrate(url)
    try:
        yield url
    finally:
        admin = await asyncpg.connect(server)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


async def fresh_topics(bootstrap: str, prefix: str) -> str:
    await create_topics(bootstrap, prefix)
    return prefix


@pytest.fixture(scope="session")
async def database_url(run_id: str) -> AsyncIterator[str]:
    async with fresh_database(f"cg_test_{run_id}") as url:
        yield url


@pytest.fixture(scope="session")
async def topic_prefix(kafka_bootstrap: str, run_id: str) -> str:
    return await fresh_topics(kafka_bootstrap, f"test-{run_id}.")


@pytest.fixture(scope="session")
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database_url, 2, 20)
    yield pool
    await asyncio.wait_for(pool.close(), timeout=10)


@pytest.fixture
def samples() -> Path:
    return ROOT / "deploy" / "local" / "samples"
