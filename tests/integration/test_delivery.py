"""The shared delivery machinery on the real PostgreSQL and Kafka: inbox, outbox relay, retries, dead letters."""

from __future__ import annotations

import asyncio
import json
import secrets
from datetime import UTC, datetime

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer, ConsumerRecord

from shared.cloudevents import attributes_for
from shared.delivery import ConsumeStats, Incoming, OutboxRelay, PoisonMessage, claim, consume, enqueue
from shared.events import CeilingReset
from shared.migrate import SHARED_MIGRATIONS
from shared.topics import Topic, topic_name
from tests.kafka_tools import Collector, headers_of, kafka_options

pytestmark = pytest.mark.integration


@pytest.fixture
async def schema(pool: asyncpg.Pool) -> str:
    """A schema of its own, so that no running service relays these rows."""
    name = f"delivery_{secrets.token_hex(3)}"
    sql = (SHARED_MIGRATIONS / "000_delivery.sql").read_text().replace("{schema}", name)
    await pool.execute(sql)
    return name


@pytest.fixture
async def producer(kafka_bootstrap: str) -> AIOKafkaProducer:
    # As the budget service: it may write the ceiling-reset topic and park dead letters (shared/acl.py).
    producer = AIOKafkaProducer(**kafka_options("budget", kafka_bootstrap), enable_idempotence=True, acks="all")
    await producer.start()
    yield producer
    await producer.stop()


def reset(year: int, programme: str = "ttc") -> CeilingReset:
    return CeilingReset(
        reset_id=f"{programme}/{year}", programme=programme, budget_year=year, opened_at=datetime(year, 1, 1, tzinfo=UTC)
    )


async def test_the_inbox_admits_an_event_id_once(pool: asyncpg.Pool, schema: str) -> None:
    async with pool.acquire() as conn:
        assert await claim(conn, schema, "consumer-a", "event-1") is True
        assert await claim(conn, schema, "consumer-a", "event-1") is False
        assert await claim(conn, schema, "consumer-b", "event-1") is True  # another consumer's own inbox


async def test_a_rolled_back_transaction_leaves_neither_claim_nor_event(pool: asyncpg.Pool, schema: str) -> None:
    async def handler_that_fails_after_writing() -> None:
        async with pool.acquire() as conn, conn.transaction():
            await claim(conn, schema, "c", "event-2")
            await enqueue(conn, schema, reset(2016), attributes_for(reset(2016), source="/test"))
            raise RuntimeError("handler failed after writing")

    with pytest.raises(RuntimeError, match="after writing"):
        await handler_that_fails_after_writing()
    async with pool.acquire() as conn:
        assert await claim(conn, schema, "c", "event-2") is True
        assert await conn.fetchval(f"SELECT count(*) FROM {schema}.outbox") == 0


async def test_relay_publishes_in_order_once_even_with_two_relays(
    pool: asyncpg.Pool, schema: str, producer: AIOKafkaProducer, kafka_bootstrap: str, topic_prefix: str
) -> None:
    programme = f"relay-{secrets.token_hex(3)}"
    events = [reset(2000 + i, programme) for i in range(60)]
    async with pool.acquire() as conn, conn.transaction():
        for event in events:
            await enqueue(conn, schema, event, attributes_for(event, source="/test"))
    relays = [OutboxRelay(pool, producer, schema, prefix=topic_prefix, batch_size=7, poll_interval_s=0.05) for _ in range(2)]
    async with Collector(kafka_bootstrap, topic_prefix, [Topic.CEILING_RESET]) as seen:
        for relay in relays:
            relay.start()
        try:
            await seen.wait_for(lambda: len(seen.bodies(Topic.CEILING_RESET, programme=programme)) >= 60, what="60 events")
            await asyncio.sleep(0.5)  # time for any duplicate to show up
        finally:
            for relay in relays:
                await relay.stop()
        years = [b["budget_year"] for b in seen.bodies(Topic.CEILING_RESET, programme=programme)]
        assert years == list(range(2000, 2060))  # in order, none twice
        record = next(r for r in seen.records[Topic.CEILING_RESET] if json.loads(r.value)["programme"] == programme)
        assert record.key == programme.encode()
        assert headers_of(record)["ce_type"] == "org.clustergrants.budget.ceiling-reset.v1"
    assert await pool.fetchval(f"SELECT count(*) FROM {schema}.outbox") == 0
    assert sum(r.published_total for r in relays) == 60


def record(value: bytes, topic: str = "in-topic", offset: int = 7) -> ConsumerRecord[bytes, bytes]:
    headers = [("ce_id", b"evt-1"), ("ce_source", b"/test"), ("ce_type", b"t.v1"), ("ce_specversion", b"1.0")]
    return ConsumerRecord(topic, 0, offset, 0, 0, b"key-1", value, None, len(value), 0, headers)


async def test_a_failing_handler_is_retried_then_parked_with_its_error(
    producer: AIOKafkaProducer, kafka_bootstrap: str, topic_prefix: str
) -> None:
    calls: list[int] = []

    async def always_fails(incoming: Incoming) -> None:
        calls.append(1)
        raise ValueError("cannot handle this")

    marker = secrets.token_hex(4).encode()
    stats = ConsumeStats()
    async with Collector(kafka_bootstrap, topic_prefix, [Topic.DEAD_LETTER]) as seen:
        await consume(
            record(b"payload-" + marker),
            always_fails,
            producer=producer,
            prefix=topic_prefix,
            group="g-test",
            max_attempts=3,
            backoff_s=0.01,
            stats=stats,
        )
        await seen.wait_for(
            lambda: any(r.value == b"payload-" + marker for r in seen.records[Topic.DEAD_LETTER]), what="the parked record"
        )
    parked = next(r for r in seen.records[Topic.DEAD_LETTER] if r.value == b"payload-" + marker)
    headers = headers_of(parked)
    assert len(calls) == 3 and stats.retried == 2 and stats.dead_lettered == 1 and stats.processed == 0
    assert headers["cg_dlt_attempts"] == "3" and headers["cg_dlt_error_type"] == "ValueError"
    assert headers["cg_dlt_error"] == "ValueError: cannot handle this"
    assert headers["cg_dlt_topic"] == "in-topic" and headers["cg_dlt_offset"] == "7" and headers["ce_id"] == "evt-1"
    assert parked.key == b"key-1"


async def test_a_poison_message_is_parked_at_once_and_a_flaky_one_is_retried(
    producer: AIOKafkaProducer, topic_prefix: str
) -> None:
    attempts: list[int] = []

    async def poison(incoming: Incoming) -> None:
        attempts.append(1)
        raise PoisonMessage("not the contract")

    stats = ConsumeStats()
    await consume(
        record(b"x"), poison, producer=producer, prefix=topic_prefix, group="g", max_attempts=5, backoff_s=0.01, stats=stats
    )
    assert len(attempts) == 1 and stats.dead_lettered == 1

    async def flaky(incoming: Incoming) -> None:
        attempts.append(1)
        if len(attempts) < 3:
            raise RuntimeError("transient bug")

    stats = ConsumeStats()
    await consume(
        record(b"y"), flaky, producer=producer, prefix=topic_prefix, group="g", max_attempts=5, backoff_s=0.01, stats=stats
    )
    assert stats.processed == 1 and stats.retried == 1 and stats.dead_lettered == 0


async def test_an_unreachable_database_is_not_the_message_s_fault(producer: AIOKafkaProducer, topic_prefix: str) -> None:
    async def database_down(incoming: Incoming) -> None:
        await asyncpg.connect("postgresql://nobody@127.0.0.1:1/none", timeout=1)

    stats = ConsumeStats()
    with pytest.raises(OSError, match=r"Connect call failed|connection refused|Errno"):
        await consume(
            record(b"z"),
            database_down,
            producer=producer,
            prefix=topic_prefix,
            group="g",
            max_attempts=1,
            backoff_s=0.01,
            stats=stats,
        )
    assert stats.dead_lettered == 0  # raised, so the offset is not committed and the record comes again
    assert topic_name(Topic.DEAD_LETTER, topic_prefix).startswith(topic_prefix)
