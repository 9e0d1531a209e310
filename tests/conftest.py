"""Fixtures for tests that talk to the real Kafka and PostgreSQL that `make test` starts.

Each test session gets its own database (created, migrated, dropped) and its own topic prefix on
the shared broker, so runs never see each other's data.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Iterator
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


@pytest.fixture(scope="session")
async def database_url(run_id: str) -> AsyncIterator[str]:
    server = _require("DATABASE_URL")
    name = f"cg_test_{run_id}"
    admin = await asyncpg.connect(server)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    parts = urlsplit(server)
    url = urlunsplit(parts._replace(path=f"/{name}"))
    await migrate(url)
    yield url
    admin = await asyncpg.connect(server)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture(scope="session")
async def topic_prefix(kafka_bootstrap: str, run_id: str) -> str:
    prefix = f"test-{run_id}."
    await create_topics(kafka_bootstrap, prefix)
    return prefix


@pytest.fixture(scope="session")
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database_url, 2, 20)
    yield pool
    await asyncio.wait_for(pool.close(), timeout=10)


@pytest.fixture
def samples() -> Iterator[Path]:
    yield ROOT / "deploy" / "local" / "samples"
