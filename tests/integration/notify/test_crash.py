"""A crash between the send and its record: the message is sent once more (one visible duplicate,
same Message-ID), recorded once, and NotificationSent is published once."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from shared.topics import Topic
from tests.conftest import fresh_database, fresh_topics
from tests.integration.notify import events as ev
from tests.integration.notify.test_notify_process import env_for
from tests.kafka_tools import Collector
from tests.processes import ServiceProcesses
from tests.smtp import Inbox

pytestmark = pytest.mark.integration


def wait_exit(processes: ServiceProcesses, timeout: float) -> int | None:
    proc = processes.procs["notify"]
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    return proc.poll()


@pytest.fixture
async def database_url() -> AsyncIterator[str]:
    """A database of its own: rows other notify tests leave scheduled must not be what gets sent."""
    async with fresh_database(f"cg_notify_crash_{uuid.uuid4().hex[:8]}") as url:
        yield url


@pytest.fixture
async def topic_prefix(kafka_bootstrap: str) -> str:
    """Topics of its own too: no record another test left unconsumed may come first."""
    return await fresh_topics(kafka_bootstrap, f"notify-crash-{uuid.uuid4().hex[:8]}.")


async def test_a_crash_after_sending_resends_once_and_records_once(
    database_url: str,
    kafka_bootstrap: str,
    topic_prefix: str,
    smtp: tuple[Inbox, int],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    inbox, port = smtp
    app_id = f"IT-CRASH-{uuid.uuid4().hex[:6]}"
    who = ev.person("en", "Crash Testperson", f"crash.{app_id.lower()}@example.org", "Crash Org")
    base = env_for(database_url, kafka_bootstrap, topic_prefix, port, NOTIFY_DECISION_WAIT_S="0")
    log_dir = tmp_path_factory.mktemp("notify-crash")
    crashing = ServiceProcesses({**base, "NOTIFY_FAULT_EXIT_AFTER_SENDS": "1"}, log_dir)
    crashing.start("notify")
    try:
        await asyncio.to_thread(crashing.wait_started, 60)
        source = await ev.publish(kafka_bootstrap, topic_prefix, ev.refused(app_id, who))
        assert await asyncio.to_thread(wait_exit, crashing, 60) == 70  # exited right after the send
    finally:
        await asyncio.to_thread(crashing.stop_all)
    assert len([m for m in inbox.messages if app_id in m["Subject"]]) == 1
    conn = await asyncpg.connect(database_url)
    try:
        row = await conn.fetchrow("SELECT status, attempts FROM notify.notifications WHERE application_id = $1", app_id)
        assert row is not None
        assert (row["status"], row["attempts"]) == ("scheduled", 0)  # the send was never recorded

        restarted = ServiceProcesses(base, log_dir)
        restarted.start("notify")
        try:
            await asyncio.to_thread(restarted.wait_started, 60)
            async with Collector(kafka_bootstrap, topic_prefix, [Topic.NOTIFICATION_SENT]) as seen:
                await seen.wait_for(
                    lambda: seen.bodies(Topic.NOTIFICATION_SENT, application_id=app_id) != [],
                    timeout=60,
                    what="NotificationSent after the restart",
                )
                await asyncio.sleep(2)
                sent = seen.bodies(Topic.NOTIFICATION_SENT, application_id=app_id)
        finally:
            await asyncio.to_thread(restarted.stop_all)
        row = await conn.fetchrow("SELECT status, attempts, payload FROM notify.notifications WHERE application_id = $1", app_id)
    finally:
        await conn.close()
    assert len(sent) == 1
    assert sent[0]["source_event_id"] == source
    assert row is not None
    assert (row["status"], row["attempts"], row["payload"]) == ("sent", 1, None)  # personal copy cleared
    mails = [m for m in inbox.messages if app_id in m["Subject"]]
    assert len(mails) == 2  # the one visible duplicate the README states
    expected = f"<{sent[0]['notification_id']}@notify.clustergrants.invalid>"
    assert [str(m["Message-ID"]).strip() for m in mails] == [expected, expected]
