"""The chaos run's portal producer (deploy/local/chaos.py `Publisher`) while no broker answers: a send
on a producer whose start failed used to wait forever (a run hung at its assessments when they fell
on the broker's restart); now each attempt is bounded and the send gives up at its deadline."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest
from aiokafka.errors import KafkaError

from deploy.local.chaos import Publisher

pytestmark = pytest.mark.unit


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_a_send_while_no_broker_answers_raises_at_its_deadline_instead_of_waiting_forever() -> None:
    publisher = Publisher(f"127.0.0.1:{closed_port()}", time.monotonic() + 2, 1_000)
    await publisher.start()  # fails: nothing listens there
    assert not publisher.started
    started = time.monotonic()
    try:
        with pytest.raises(KafkaError):  # it gave up by itself (this test's own bound raises TimeoutError)
            await asyncio.wait_for(publisher.acknowledged("t", b"v", "a test record"), 60)
        assert publisher.retries >= 1
        assert time.monotonic() - started < 30
    finally:
        await publisher.stop()
