"""Fixtures for tests that talk to the real Kafka and PostgreSQL that `make test` starts.

Each test session gets its own database (created, migrated, dropped) and its own topic prefix on
the shared broker, so runs never see each other's data. The broker authenticates everyone: topics
(and the ACLs of shared/acl.py for their prefix) are created as the admin, and every other client
acts as the principal that may do what it does (tests/kafka_tools.py, tests/processes.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from deploy.local import kafka_users
from shared import kafka_admin
from shared.acl import ADMIN, AGENCY_READER
from shared.db import create_pool
from shared.kafka_admin import create_topics
from shared.migrate import scratch_database
from shared.topics import Topic, topic_name

ROOT = Path(__file__).resolve().parents[1]

#: What deploy/local/stack.py exports to the command it runs (the operator's Kafka credentials, the
#: credentials file, TLS files). Pure tests must see the settings' defaults whether they run under
#: `make test` or `make test-unit`, and never a password.
STACK_VARIABLES = (
    "KAFKA_SECURITY_PROTOCOL",
    "KAFKA_SASL_MECHANISM",
    "KAFKA_SASL_USERNAME",
    "KAFKA_SASL_PASSWORD",
    "KAFKA_SSL_CAFILE",
    "DATABASE_SSL_MODE",
    "DATABASE_SSL_ROOT_CERT",
    kafka_users.CREDENTIALS_ENV,
)


@pytest.fixture(autouse=True)
def _pure_tests_see_no_stack_credentials(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    if request.node.get_closest_marker("unit") is not None:
        for name in STACK_VARIABLES:
            monkeypatch.delenv(name, raising=False)


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
    async with scratch_database(_require("DATABASE_URL"), name) as url:
        yield url


async def fresh_topics(bootstrap: str, prefix: str) -> str:
    """The project's topics named with `prefix`, and the ACLs of shared/acl.py on them (as the admin)."""
    options = kafka_users.client_options(ADMIN, bootstrap)
    await create_topics(options.pop("bootstrap_servers"), prefix, **options)
    if kafka_users.available():
        store = kafka_users.KafkaCredentials.load(Path(os.environ[kafka_users.CREDENTIALS_ENV]))
        admin = AIOKafkaAdminClient(**kafka_users.client_options(ADMIN, bootstrap))
        await admin.start()
        try:
            await kafka_admin.sync_acls(admin, store.portals, prefix, groups=False)
        finally:
            await admin.close()
        probe = topic_name(Topic.ELIGIBILITY_DECIDED, prefix)
        await kafka_admin.wait_until_authorized(kafka_users.client_options(AGENCY_READER, bootstrap), probe)
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
