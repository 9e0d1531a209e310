"""Small helpers for tests on the real broker: publish raw records, collect what topics receive.

Every client here authenticates as the principal that may do what it does (shared/acl.py): a record
is published by its topic's legitimate producer (a portal for the submitted topic, the producing
service otherwise), topics are read by the agency reader (public topics) or the operator (dead
letters). Credentials come from the stack's credentials file (deploy/local/kafka_users.py).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from deploy.local.kafka_users import client_options
from shared.acl import ADMIN, producer_of, reader_of
from shared.topics import TOPIC_SPECS, Topic, topic_name


def topic_of(name: str) -> Topic | None:
    """The project topic a (possibly prefixed) topic name is, if any."""
    return next((t for t in Topic if name.endswith(t.value)), None)


def kafka_options(principal: str, bootstrap: str | None = None) -> dict[str, Any]:
    """aiokafka keyword arguments (bootstrap included) for a client acting as `principal`."""
    return client_options(principal, bootstrap)


async def publish_raw(
    bootstrap: str,
    topic: str,
    value: bytes | None,
    key: bytes | None = None,
    headers: list[tuple[str, bytes]] | None = None,
    *,
    principal: str | None = None,
) -> None:
    """Publish one record as `principal` (default: the topic's legitimate producer)."""
    known = topic_of(topic)
    who = principal or (producer_of(known) if known is not None else ADMIN)
    producer = AIOKafkaProducer(**kafka_options(who, bootstrap), enable_idempotence=True, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, value=value, key=key, headers=headers or [])
    finally:
        await producer.stop()


class Collector:
    """Reads every record of the given topics (from the beginning) in the background.

    Each topic is read by a principal that may read it (the agency reader where it can), one consumer
    per principal, with the topics' partitions assigned (no consumer group: nothing to join or commit).
    """

    def __init__(self, bootstrap: str, prefix: str, topics: list[Topic]) -> None:
        self.prefix = prefix
        self.names = {topic_name(t, prefix): t for t in topics}
        readers: dict[str, list[TopicPartition]] = defaultdict(list)
        for topic in topics:
            readers[reader_of(topic)] += [
                TopicPartition(topic_name(topic, prefix), p) for p in range(TOPIC_SPECS[topic].partitions)
            ]
        self.consumers = []
        for principal, partitions in readers.items():
            consumer = AIOKafkaConsumer(
                **kafka_options(principal, bootstrap), auto_offset_reset="earliest", enable_auto_commit=False
            )
            self.consumers.append((consumer, partitions))
        self.records: dict[Topic, list[ConsumerRecord[bytes, bytes]]] = defaultdict(list)
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> Collector:
        for consumer, partitions in self.consumers:
            await consumer.start()
            consumer.assign(partitions)
            self._tasks.append(asyncio.create_task(self._run(consumer)))
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for consumer, _ in self.consumers:
            await consumer.stop()

    async def _run(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                for record in records:
                    self.records[self.names[record.topic]].append(record)

    def matching(self, topic: Topic, **match: Any) -> list[ConsumerRecord[bytes, bytes]]:
        """Records on `topic` whose JSON body's top-level fields equal `match` (others are skipped)."""
        out = []
        for record in self.records[topic]:
            try:
                body = json.loads(record.value)
            except (TypeError, ValueError):
                continue
            if isinstance(body, dict) and all(body.get(k) == v for k, v in match.items()):
                out.append(record)
        return out

    def bodies(self, topic: Topic, **match: Any) -> list[dict[str, Any]]:
        """JSON bodies on `topic` whose top-level fields equal `match`."""
        return [json.loads(record.value) for record in self.matching(topic, **match)]

    async def wait_for(self, check: Callable[[], bool], timeout: float = 60.0, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def headers_of(record: ConsumerRecord[bytes, bytes]) -> dict[str, str]:
    return {k: v.decode() for k, v in record.headers}


class _UndecodableName(str):
    """A header name whose UTF-8 encoding the record builder asks for, answered with bytes that are not UTF-8."""

    def encode(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        return b"\xff\xfe-not-utf8"


async def publish_with_undecodable_header_name(
    bootstrap: str, topic: str, partition: int, value: bytes, key: bytes | None = None, *, principal: str | None = None
) -> None:
    """Publish one record whose header NAME is not UTF-8, as a client written in C may: Java and Python
    clients cannot, but the broker stores whatever bytes arrive. Built with aiokafka's pure-Python batch
    builder (the C one refuses the name before it reaches the wire)."""
    from aiokafka.record.default_records import _DefaultRecordBatchBuilderPy

    known = topic_of(topic)
    who = principal or (producer_of(known) if known is not None else ADMIN)
    producer = AIOKafkaProducer(**kafka_options(who, bootstrap), enable_idempotence=False, acks="all")
    await producer.start()
    try:
        batch = producer.create_batch()
        batch._builder = _DefaultRecordBatchBuilderPy(2, 0, 0, -1, -1, -1, 1 << 20)
        batch.append(timestamp=None, key=key, value=value, headers=[(_UndecodableName("x"), b"v")])
        batch.close()
        await (await producer.send_batch(batch, topic, partition=partition))
    finally:
        await producer.stop()
