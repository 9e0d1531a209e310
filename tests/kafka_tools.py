"""Small helpers for tests on the real broker: publish raw records, collect what topics receive."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord

from shared.topics import Topic, topic_name


async def publish_raw(
    bootstrap: str, topic: str, value: bytes | None, key: bytes | None = None, headers: list[tuple[str, bytes]] | None = None
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, value=value, key=key, headers=headers or [])
    finally:
        await producer.stop()


class Collector:
    """Reads every record of the given topics (from the beginning) in the background."""

    def __init__(self, bootstrap: str, prefix: str, topics: list[Topic]) -> None:
        self.prefix = prefix
        self.names = {topic_name(t, prefix): t for t in topics}
        self.consumer = AIOKafkaConsumer(
            *self.names,
            bootstrap_servers=bootstrap,
            group_id=f"test-collector-{secrets.token_hex(4)}",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        self.records: dict[Topic, list[ConsumerRecord[bytes, bytes]]] = defaultdict(list)
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Collector:
        await self.consumer.start()
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        await self.consumer.stop()

    async def _run(self) -> None:
        while True:
            batch = await self.consumer.getmany(timeout_ms=200)
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
    bootstrap: str, topic: str, partition: int, value: bytes, key: bytes | None = None
) -> None:
    """Publish one record whose header NAME is not UTF-8, as a client written in C may: Java and Python
    clients cannot, but the broker stores whatever bytes arrive. Built with aiokafka's pure-Python batch
    builder (the C one refuses the name before it reaches the wire)."""
    from aiokafka.record.default_records import _DefaultRecordBatchBuilderPy

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False, acks="all")
    await producer.start()
    try:
        batch = producer.create_batch()
        batch._builder = _DefaultRecordBatchBuilderPy(2, 0, 0, -1, -1, -1, 1 << 20)
        batch.append(timestamp=None, key=key, value=value, headers=[(_UndecodableName("x"), b"v")])
        batch.close()
        await (await producer.send_batch(batch, topic, partition=partition))
    finally:
        await producer.stop()
