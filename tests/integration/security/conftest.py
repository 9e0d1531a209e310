"""The broker of `make test` as an attacker meets it: each test acts as one principal of shared/acl.py.

The topics here have a prefix of their own, so that nothing a test publishes reaches a service, and
every topic holds one record (published by its legitimate producer) for the readers to find.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from deploy.local import kafka_users
from shared.acl import producer_of
from shared.topics import Topic, topic_name
from tests.conftest import fresh_topics
from tests.kafka_tools import kafka_options


@dataclass(frozen=True)
class Broker:
    bootstrap: str
    prefix: str
    credentials: kafka_users.KafkaCredentials

    def name(self, topic: Topic) -> str:
        return topic_name(topic, self.prefix)

    async def produce(self, principal: str, topic: Topic, value: bytes = b"{}", *, idempotent: bool = True) -> None:
        """One record on `topic` as `principal` (idempotent: as the services and portals publish); raises
        what the broker answers. An idempotent producer asks for a producer id first, which Kafka grants
        only to a principal with WRITE on some topic (KIP-679): others fail with ClusterAuthorizationFailed."""
        producer = AIOKafkaProducer(
            **kafka_options(principal, self.bootstrap), enable_idempotence=idempotent, acks="all" if idempotent else 1
        )
        try:
            await producer.start()
            await asyncio.wait_for(producer.send_and_wait(self.name(topic), value), 30)
        finally:
            await producer.stop()

    async def read(self, principal: str, topic: Topic, timeout: float = 15) -> bytes:
        """The first record of `topic`, read as `principal` without a consumer group; raises what the broker answers."""
        consumer = AIOKafkaConsumer(
            self.name(topic), **kafka_options(principal, self.bootstrap), auto_offset_reset="earliest", enable_auto_commit=False
        )
        try:
            await consumer.start()
            deadline = asyncio.get_running_loop().time() + timeout
            while asyncio.get_running_loop().time() < deadline:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    if records:
                        return records[0].value or b""
            raise AssertionError(f"{principal} read nothing from {self.name(topic)} in {timeout:.0f} s")
        finally:
            await consumer.stop()


@pytest.fixture(scope="session")
def credentials() -> kafka_users.KafkaCredentials:
    if not kafka_users.available():
        pytest.fail(
            f"{kafka_users.CREDENTIALS_ENV} is not set: these tests need the authenticated broker that "
            "deploy/local/stack.py starts (make test)"
        )
    return kafka_users.KafkaCredentials.load(Path(os.environ[kafka_users.CREDENTIALS_ENV]))


@pytest.fixture(scope="session")
async def broker(kafka_bootstrap: str, run_id: str, credentials: kafka_users.KafkaCredentials) -> Broker:
    prefix = await fresh_topics(kafka_bootstrap, f"sec-{run_id}.")
    here = Broker(kafka_bootstrap, prefix, credentials)
    await asyncio.gather(*(here.produce(producer_of(t), t, f'{{"seed": "{t.value}"}}'.encode()) for t in Topic))
    return here
