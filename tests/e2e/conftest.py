from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import pytest

from tests.conftest import fresh_database, fresh_topics
from tests.processes import ROOT, ServiceProcesses, free_port
from tests.smtp import Inbox, smtp_server

LOCAL = ROOT / "deploy" / "local"  # the local operator files: demo values, not document figures


@pytest.fixture(scope="session")
def smtp_inbox() -> Iterator[tuple[Inbox, int]]:
    with smtp_server() as server:
        yield server


@dataclass
class Stack:
    processes: ServiceProcesses
    intake_url: str
    token: str
    prefix: str
    bootstrap: str
    database_url: str
    extra: dict[str, str] = field(default_factory=dict)


@pytest.fixture(scope="session")
async def e2e_database_url(run_id: str) -> AsyncIterator[str]:
    """The e2e services' own database: integration tests of the same session never see them."""
    async with fresh_database(f"cg_e2e_{run_id}") as url:
        yield url


@pytest.fixture(scope="session")
async def stack(
    kafka_bootstrap: str,
    e2e_database_url: str,
    run_id: str,
    smtp_inbox: tuple[Inbox, int],
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Stack]:
    # Their own topics too: the services' consumer groups must not take integration tests' records.
    topic_prefix = await fresh_topics(kafka_bootstrap, f"e2e-{run_id}.")
    database_url = e2e_database_url
    log_dir = tmp_path_factory.mktemp("service-logs")
    http_port = free_port()
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "DATABASE_URL": database_url,
        "TOPIC_PREFIX": topic_prefix,
        "INTAKE_HTTP_PORT": str(http_port),
        "INTAKE_API_TOKENS": "e2e-token,portal-other:other-token",
        "INTAKE_OFFICER_TOKENS": "k-2001:officer-token",
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(smtp_inbox[1]),
        "BUDGET_POTS_FILE": str(LOCAL / "budget-pots.yaml"),
        "ELIGIBILITY_OPERATOR_PARAMETERS_FILE": str(LOCAL / "operator-parameters.yaml"),
        "HANDLER_RETRY_BACKOFF_S": "0.05",
    }
    processes = ServiceProcesses(env, log_dir)
    processes.start_all()
    try:
        await asyncio.to_thread(processes.wait_started, 90)
        yield Stack(processes, f"http://127.0.0.1:{http_port}", "e2e-token", topic_prefix, kafka_bootstrap, database_url)
    finally:
        await asyncio.to_thread(processes.stop_all)
