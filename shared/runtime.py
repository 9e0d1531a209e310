"""The seedwork every service's composition root uses: pool, producer, outbox relay, subscribers.

A service's `app.py` builds one `ServiceRuntime`, registers its handlers with `subscribe`, and
`run()`s it until SIGTERM or SIGINT, then stops in order: stop consuming, flush the outbox, close.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import os
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncpg
import structlog
from aiokafka import AIOKafkaProducer
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage

from shared.db import create_pool
from shared.delivery import ConsumeStats, Handler, Incoming, OutboxRelay, UnitOfWork, claim, consume, is_transient
from shared.kafka_security import client_options, security
from shared.ops import Metrics, OpsServer
from shared.settings import CommonSettings, database_ssl
from shared.topics import Topic, service_source, topic_name
from shared.tracing import configure_tracing

log = structlog.get_logger("runtime")
T = TypeVar("T")


async def _raw_batch(message: Any) -> list[bytes]:
    """FastStream decoder that hands the handler the undecoded Kafka values; we validate them ourselves."""
    body = message.body
    return list(body) if isinstance(body, list | tuple) else [body]


async def _until_up(what: str, timeout_s: float, connect: Callable[[], Awaitable[T]]) -> T:
    """Connect, retrying with back-off while the infrastructure is not up yet (a restart, a rollout)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    delay = 0.5
    while True:
        try:
            return await connect()
        except Exception as error:
            if not is_transient(error) or asyncio.get_running_loop().time() + delay > deadline:
                raise
            log.warning("waiting for the infrastructure", what=what, error=type(error).__name__, retry_in_s=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


@dataclass
class _Batch:
    """The consumed batch being handled in this task: its connection and what its records did."""

    conn: asyncpg.Connection | None = None
    published: bool = False
    committed: bool = False


_BATCH: contextvars.ContextVar[_Batch | None] = contextvars.ContextVar("clustergrants_batch", default=None)


@dataclass
class Subscription:
    topic: Topic
    handler: Handler
    stats: ConsumeStats
    subscriber: Any = None


class ServiceRuntime:
    def __init__(self, name: str, settings: CommonSettings, *, schema: str) -> None:
        self.name = name
        self.settings = settings
        self.schema = schema
        self.source = service_source(name)
        self.group = f"clustergrants.{name}"
        self.pool: asyncpg.Pool | None = None
        self.producer: AIOKafkaProducer | None = None
        self.relay: OutboxRelay | None = None
        self.broker = KafkaBroker(
            settings.kafka_bootstrap_servers, client_id=f"clustergrants-{name}", logger=None, security=security(settings)
        )
        self.subscriptions: list[Subscription] = []
        self.startup: list[Callable[[asyncpg.Pool], Awaitable[None]]] = []
        # Called after each committed batch of consumed records (e.g. wake a worker that reads
        # what the batch wrote: before the commit it would not see it).
        self.after_commit: list[Callable[[], None]] = []
        self.metrics = Metrics(name)
        self.ops = OpsServer(settings.ops_http_host, settings.ops_http_port, self.readiness, self.metrics, self._observe)
        self._stopping = asyncio.Event()
        # Fault injection for crash tests: exit abruptly after the N-th committed batch of consumed
        # records, i.e. after the database commit and before the Kafka offset commit.
        self._exit_after_commits = int(os.environ.get("CLUSTERGRANTS_FAULT_EXIT_AFTER_COMMITS", "0"))
        self._commits = 0

    # -- wiring --------------------------------------------------------------------------------

    def subscribe(self, topic: Topic, handler: Handler) -> Subscription:
        """Consume `topic` in this service's consumer group; `handler` runs once per record.

        Records come in batches (up to `consumer_batch_max`): the whole batch is ONE PostgreSQL
        transaction in which each record's `transaction()` is a savepoint, and ONE offset commit
        after it. A record whose handler fails rolls back only its savepoint (and is retried, then
        parked); an infrastructure error rolls back the batch and it is redelivered whole.
        """
        subscription = Subscription(topic, handler, ConsumeStats(topic=topic.value, service=self.name, metrics=self.metrics))
        self.subscriptions.append(subscription)

        async def on_batch(bodies: list[bytes], msg: KafkaMessage) -> None:
            assert self.producer is not None and self.pool is not None and self.relay is not None
            raw = msg.raw_message
            records = raw if isinstance(raw, tuple) else (raw,)
            batch = _Batch()
            async with self.pool.acquire() as conn, conn.transaction():
                batch.conn = conn
                token = _BATCH.set(batch)
                try:
                    for record in records:
                        await consume(
                            record,  # type: ignore[arg-type]
                            subscription.handler,
                            producer=self.producer,
                            prefix=self.settings.topic_prefix,
                            group=self.group,
                            max_attempts=self.settings.handler_max_attempts,
                            backoff_s=self.settings.handler_retry_backoff_s,
                            stats=subscription.stats,
                        )
                finally:
                    _BATCH.reset(token)
            if batch.published:
                self.relay.wake()
            for hook in self.after_commit:
                hook()
            if batch.committed:
                self._after_commit()

        subscription.subscriber = self.broker.subscriber(
            topic_name(topic, self.settings.topic_prefix),
            group_id=self.group,
            auto_offset_reset="earliest",
            ack_policy=AckPolicy.NACK_ON_ERROR,  # commit only after the handler; redeliver on error
            decoder=_raw_batch,
            batch=True,
            max_records=self.settings.consumer_batch_max,
            batch_timeout_ms=self.settings.consumer_batch_timeout_ms,
            title=f"{self.name}:{topic.value}",
        )
        subscription.subscriber(on_batch)
        return subscription

    @contextlib.asynccontextmanager
    async def transaction(self, cause: Incoming | None = None, consumer: str | None = None) -> AsyncIterator[UnitOfWork]:
        """One transaction: claim `cause` in the inbox, let the caller change state and publish.

        Inside a consumed batch this is a savepoint of the batch's transaction.
        """
        assert self.pool is not None and self.relay is not None
        batch = _BATCH.get()
        async with contextlib.AsyncExitStack() as stack:
            if batch is not None and batch.conn is not None:
                conn = batch.conn
            else:
                conn = await stack.enter_async_context(self.pool.acquire())
            await stack.enter_async_context(conn.transaction())
            uow = UnitOfWork(conn=conn, schema=self.schema, source=self.source, cause=cause)
            if cause is not None:
                uow.duplicate = not await claim(conn, self.schema, consumer or self.group, cause.event_id)
                if uow.duplicate:
                    log.info("duplicate delivery ignored")
            yield uow
        if batch is not None:
            batch.published |= bool(uow.published)
            batch.committed |= cause is not None and not uow.duplicate
            return
        if uow.published:
            self.relay.wake()

    def _after_commit(self) -> None:
        if self._exit_after_commits:
            self._commits += 1
            if self._commits >= self._exit_after_commits:
                log.warning("fault injection: exiting between database commit and offset commit")
                os._exit(70)

    # -- health and metrics ---------------------------------------------------------------------

    async def readiness(self) -> dict[str, bool]:
        """Ready when PostgreSQL answers a query and Kafka answers a metadata request."""
        database = kafka = False
        with contextlib.suppress(Exception):
            assert self.pool is not None
            database = await asyncio.wait_for(self.pool.fetchval("SELECT true"), timeout=2)
        with contextlib.suppress(Exception):
            assert self.producer is not None
            topic = topic_name(Topic.DEAD_LETTER, self.settings.topic_prefix)
            kafka = bool(await asyncio.wait_for(self.producer.partitions_for(topic), timeout=2))
        return {"database": bool(database), "kafka": kafka}

    async def _observe(self) -> None:
        """Refresh the gauges a scrape reads: outbox backlog and consumer lag per topic."""
        if self.relay is not None:
            self.metrics.outbox_backlog.labels(self.name).set(await self.relay.backlog())
        for sub in self.subscriptions:
            consumer = getattr(sub.subscriber, "consumer", None)
            if consumer is None:
                continue
            lag = 0
            for tp in consumer.assignment():
                highwater = consumer.highwater(tp)
                if highwater is not None:
                    lag += max(0, highwater - await consumer.position(tp))
            self.metrics.consumer_lag.labels(self.name, sub.topic.value).set(lag)

    # -- life cycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        s = self.settings
        configure_tracing(self.name)
        await self.ops.start()
        self.pool = await _until_up(
            "PostgreSQL",
            s.startup_timeout_s,
            lambda: create_pool(s.database_url.get_secret_value(), s.db_pool_min, s.db_pool_max, database_ssl(s)),
        )

        async def start_producer() -> AIOKafkaProducer:
            producer = AIOKafkaProducer(
                **client_options(s),
                client_id=f"clustergrants-{self.name}-relay",
                enable_idempotence=True,
                acks="all",
                linger_ms=2,
            )
            try:
                await producer.start()
            except BaseException:
                await producer.stop()
                raise
            return producer

        self.producer = await _until_up("Kafka", s.startup_timeout_s, start_producer)
        self.relay = OutboxRelay(
            self.pool,
            self.producer,
            self.schema,
            prefix=s.topic_prefix,
            batch_size=s.outbox_batch_size,
            poll_interval_s=s.outbox_poll_interval_s,
        )
        self.relay.start()
        for step in self.startup:  # before consuming: e.g. load configuration into the database
            await step(self.pool)
        await self.broker.start()
        log.info(
            "service started", topics=[sub.topic.value for sub in self.subscriptions], group=self.group, ops_port=s.ops_http_port
        )

    async def stop(self) -> None:
        with contextlib.suppress(Exception):
            await self.broker.stop()
        if self.relay is not None and self.pool is not None:
            with contextlib.suppress(Exception):
                async with self.pool.acquire() as conn:
                    await asyncio.wait_for(self.relay.relay_once(conn), timeout=5)
            await self.relay.stop()
        if self.producer is not None:
            with contextlib.suppress(Exception):
                await self.producer.stop()
        if self.pool is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.pool.close(), timeout=5)
        await self.ops.stop()
        log.info("service stopped")

    def request_stop(self) -> None:
        self._stopping.set()

    async def run(self, *extra: Callable[[asyncio.Event], Awaitable[None]]) -> None:
        """Start, run `extra` tasks (e.g. an HTTP server) until a stop signal, then stop in order."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        await self.start()
        tasks = [asyncio.create_task(task(self._stopping)) for task in extra]
        try:
            await self._stopping.wait()
        finally:
            log.info("stopping")
            for task in tasks:
                with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                    await asyncio.wait_for(task, timeout=10)
            await self.stop()
