"""The budget service as OS processes on the real Kafka and PostgreSQL: exactly one commitment for a
decision delivered twice or interrupted between the database commit and the offset commit, and
several replicas in one consumer group that never overspend."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import pytest
import yaml

from deploy.local.kafka_users import principal_env
from shared.cloudevents import attributes_for, to_headers
from shared.events import EligibilityDecided
from shared.topics import Topic, topic_name
from tests.kafka_tools import Collector, headers_of, publish_raw
from tests.processes import free_port
from tests.unit.budget.builders import decided, grant, programme_with_pots

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
OUT = [Topic.GRANT_COMMITTED, Topic.GRANT_REFUSED, Topic.DEAD_LETTER]


class Budget:
    """Budget service processes started by this test, stopped by their own pids."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env = {**os.environ, **env, "LOG_FORMAT": "json", "PYTHONUNBUFFERED": "1"}
        self.log_dir = log_dir
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def log(self, name: str) -> str:
        path = self.log_dir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def start(self, name: str, **extra_env: str) -> None:
        with (self.log_dir / f"{name}.log").open("ab") as log:
            self.procs[name] = subprocess.Popen(
                [sys.executable, "-m", "services.budget"],
                cwd=ROOT,
                env={**self.env, "OPS_HTTP_PORT": str(free_port()), **extra_env},
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def wait_started(self, name: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.procs[name].poll() is not None:
                raise RuntimeError(f"{name} exited with {self.procs[name].returncode}:\n{self.log(name)[-3000:]}")
            if self.log(name).count('"service started"') >= 1:
                return
            time.sleep(0.2)
        raise RuntimeError(f"{name} not started after {timeout} s")

    def wait_exit(self, name: str, timeout: float = 60) -> int:
        return self.procs[name].wait(timeout=timeout)

    def stop(self, name: str) -> None:
        proc = self.procs.pop(name)
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.stop(name)


@pytest.fixture
def budget_env(kafka_bootstrap: str, database_url: str, topic_prefix: str, tmp_path: Path) -> tuple[dict[str, str], Path]:
    return (
        {
            "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
            **principal_env("budget"),  # the budget service's own Kafka principal (shared/acl.py)
            "DATABASE_URL": database_url,
            "TOPIC_PREFIX": topic_prefix,
            "HANDLER_RETRY_BACKOFF_S": "0.05",
            "OUTBOX_POLL_INTERVAL_S": "0.2",
        },
        tmp_path,
    )


def write_pots(path: Path, programme: str, total: int) -> Path:
    path.write_text(yaml.safe_dump(programme_with_pots(programme, {"agency": total})))
    return path


async def publish_decided(bootstrap: str, prefix: str, event: EligibilityDecided, event_id: str | None = None) -> str:
    attributes = attributes_for(event, source="/clustergrants/eligibility", event_id=event_id)
    await publish_raw(
        bootstrap,
        topic_name(Topic.ELIGIBILITY_DECIDED, prefix),
        event.model_dump_json().encode(),
        event.key().encode(),
        to_headers(attributes),
    )
    return attributes.id


def committed_for(seen: Collector, application_id: str) -> list[str]:
    """The CloudEvents ids of the GrantCommitted records for `application_id` (copies included)."""
    return [headers_of(r)["ce_id"] for r in seen.matching(Topic.GRANT_COMMITTED, application_id=application_id)]


async def test_duplicate_delivery_and_a_crash_before_the_offset_commit_yield_one_commitment(
    budget_env: tuple[dict[str, str], Path], kafka_bootstrap: str, topic_prefix: str, database_url: str
) -> None:
    env, tmp = budget_env
    programme = f"t{secrets.token_hex(4)}"
    env = {**env, "BUDGET_POTS_FILE": str(write_pots(tmp / "pots.yaml", programme, 100_000_000))}
    budget = Budget(env, tmp)
    conn = await asyncpg.connect(database_url)
    try:
        async with Collector(kafka_bootstrap, topic_prefix, OUT) as seen:
            # 1. The same event twice (same CloudEvents id), and re-emitted under a new id.
            budget.start("first")
            await asyncio.to_thread(budget.wait_started, "first")
            twice = decided(grant(programme, {2020: 1_000_000}))
            event_id = await publish_decided(kafka_bootstrap, topic_prefix, twice)
            await publish_decided(kafka_bootstrap, topic_prefix, twice, event_id)
            await publish_decided(kafka_bootstrap, topic_prefix, twice)
            await seen.wait_for(lambda: committed_for(seen, twice.application_id) != [], what="GrantCommitted")

            def settled() -> bool:
                log = budget.log("first")
                return '"duplicate deliveries ignored"' in log and log.count('"decision handled"') >= 2

            await seen.wait_for(settled, what="the copy dropped by the inbox and the re-emission skipped")
            await asyncio.sleep(1)
            assert len(committed_for(seen, twice.application_id)) == 1
            budget.stop("first")

            # 2. Killed between the database commit and the Kafka offset commit.
            budget.start("crashing", CLUSTERGRANTS_FAULT_EXIT_AFTER_COMMITS="1")
            await asyncio.to_thread(budget.wait_started, "crashing")
            crash = decided(grant(programme, {2020: 2_000_000}))
            crash_event_id = await publish_decided(kafka_bootstrap, topic_prefix, crash)
            assert await asyncio.to_thread(budget.wait_exit, "crashing") == 70
            budget.procs.pop("crashing")
            assert await conn.fetchval("SELECT count(*) FROM budget.grants WHERE application_id = $1", crash.application_id) == 1
            assert committed_for(seen, crash.application_id) == []  # the outbox row waits for the relay
            budget.start("restarted")
            await asyncio.to_thread(budget.wait_started, "restarted")
            await seen.wait_for(lambda: committed_for(seen, crash.application_id) != [], what="GrantCommitted after the crash")
            await seen.wait_for(
                lambda: '"duplicate deliveries ignored"' in budget.log("restarted"),
                what="the redelivered decision dropped by the inbox",
            )
            await asyncio.sleep(1)
            assert len(committed_for(seen, crash.application_id)) == 1
            assert await conn.fetchval("SELECT count(*) FROM budget.inbox WHERE event_id = $1", crash_event_id) == 1

        grants = await conn.fetch("SELECT application_id FROM budget.grants WHERE programme = $1", programme)
        assert sorted(r["application_id"] for r in grants) == sorted([twice.application_id, crash.application_id])
        pot = await conn.fetchrow("SELECT committed_minor FROM budget.pots WHERE pot_id = $1", f"{programme}/agency")
        assert pot is not None
        assert pot["committed_minor"] == 3_000_000
        entries = await conn.fetchval(
            "SELECT count(*) FROM budget.entries e JOIN budget.grants g USING (grant_id) WHERE g.programme = $1", programme
        )
        assert entries == 2
    finally:
        await conn.close()
        budget.stop_all()


async def test_replicas_in_one_consumer_group_never_overspend(
    budget_env: tuple[dict[str, str], Path], kafka_bootstrap: str, topic_prefix: str, database_url: str
) -> None:
    """Three replicas, 60 decisions on six partitions, a pot that fits 17 of them."""
    env, tmp = budget_env
    programme = f"t{secrets.token_hex(4)}"
    env = {**env, "BUDGET_POTS_FILE": str(write_pots(tmp / "pots.yaml", programme, 17 * 3_000_000 + 2_999_999))}
    budget = Budget(env, tmp)
    replicas = ["replica-1", "replica-2", "replica-3"]
    conn = await asyncpg.connect(database_url)
    try:
        for name in replicas:
            budget.start(name)
        for name in replicas:
            await asyncio.to_thread(budget.wait_started, name)
        await asyncio.sleep(8)  # let the group settle so the partitions spread over the replicas
        decisions = [decided(grant(programme, {2020: 3_000_000})) for _ in range(60)]
        mine = {d.application_id for d in decisions}
        async with Collector(kafka_bootstrap, topic_prefix, OUT) as seen:
            await asyncio.gather(*(publish_decided(kafka_bootstrap, topic_prefix, d) for d in decisions))

            def outcomes() -> tuple[set[str], set[str]]:
                done = {
                    t: {json.loads(r.value)["application_id"] for r in seen.records[t]} & mine
                    for t in (Topic.GRANT_COMMITTED, Topic.GRANT_REFUSED)
                }
                return done[Topic.GRANT_COMMITTED], done[Topic.GRANT_REFUSED]

            await seen.wait_for(lambda: sum(map(len, outcomes())) == 60, timeout=120, what="60 outcomes")
            committed, refused = outcomes()
        assert len(committed) == 17
        assert len(refused) == 43
        pot = await conn.fetchrow("SELECT * FROM budget.pots WHERE pot_id = $1", f"{programme}/agency")
        assert pot is not None
        assert pot["committed_minor"] == 17 * 3_000_000
        handled_by = [name for name in replicas if '"decision handled"' in budget.log(name)]
        assert len(handled_by) >= 2, "the decisions were not spread over the replicas: the test proves nothing"
    finally:
        await conn.close()
        budget.stop_all()
