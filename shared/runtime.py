"""The seedwork every service's composition root uses: pool, producer, outbox relay, subscriptions.

A service's `app.py` builds one `ServiceRuntime`, registers one batch handler per consumed event type
with `on(EventType, handler)`, and `run()`s it until SIGTERM or SIGINT, then stops in order: stop
consuming, flush the outbox, close.

The service reads all its topics with ONE consumer in its group: one fetch, one transaction and one
offset commit serve the records of every topic that has some (a consumer per topic made a service
with five topics fetch, commit and open a transaction five times for what arrived at once).

What the runtime does with each consumed batch (up to `CONSUMER_BATCH_MAX` records, of any of the
service's topics; each topic's records go to its handler, in the order the handlers were registered):

1. Reads every record itself, from raw bytes (`shared.records.read`): a record that cannot be read,
   or that comes from a producer or is of a type the topic does not allow, becomes a `Rejected`
   with its reason; the records beside it are not affected.
2. In ONE PostgreSQL transaction: claims every record's identity `(source, id)` in the inbox with
   one statement, hands the handler the events it has not seen before (in offset order), parks the
   rejected ones (or hands the unreadable ones to the topic's `on_rejected`, e.g. intake's
   `ApplicationRejected`), and writes all outgoing events and dead-letter copies with one statement.
3. If the handler fails, the transaction is rolled back and the batch is done again one record at a
   time, each in a savepoint, with bounded retries; a record that still fails is parked with the
   error and the others go on. If the infrastructure fails (PostgreSQL, Kafka), nothing is parked:
   the batch is rolled back and read again once it is back.
4. After the commit, and only then, commits the batch's offsets, for the partitions this process
   still owns. Any exception outside a handler (the framework, the decoder, a middleware) is logged,
   counted and rewinds the batch: an offset never moves past a record that was not processed or
   parked.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Generic

import asyncpg
import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import OffsetAndMetadata
from faststream import AckPolicy, BaseMiddleware
from faststream.kafka import KafkaBroker
from faststream.kafka.message import KafkaMessage
from opentelemetry.trace import SpanKind
from typing_extensions import TypeVar

from shared.db import Connection, create_pool
from shared.delivery import (
    MAX_RECORD_BYTES,
    OutboxRelay,
    PoisonMessage,
    UnitOfWork,
    claim_all,
    describe_error,
    is_transient,
    unclaim,
)
from shared.events import Event
from shared.kafka_security import client_options, security
from shared.ops import Metrics, OpsServer
from shared.records import Contract, Delivery, Rejected, ResilientConsumer, position_of, read
from shared.settings import CommonSettings, database_ssl
from shared.topics import Topic, service_source, topic_name
from shared.tracing import configure_tracing, context_from, span

log = structlog.get_logger("runtime")
#: How often the event loop's lag is sampled (a timer asked for this far ahead, and how late it fired).
LOOP_LAG_SAMPLE_S = 0.05
T = TypeVar("T")
E = TypeVar("E", bound=Event)
# The repositories a unit of work carries; the services use none (None) and write UnitOfWork bare.
R = TypeVar("R", default=None)

Handler = Callable[[UnitOfWork[Any], list[Delivery[Any]]], Awaitable[None]]
"""Handles the new events of one consumed batch, in offset order, in the batch's unit of work."""

RejectedHandler = Callable[[UnitOfWork[Any], list[Rejected]], Awaitable[None]]
"""Turns unreadable records into what the topic's contract says (e.g. intake's ApplicationRejected)."""


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


async def _records_as_body(message: Any) -> Any:
    """FastStream parser: the batch stays the raw records; the runtime reads them itself."""
    return KafkaMessage(body=message, headers={}, raw_message=message, consumer=_NO_CONSUMER)


async def _records(message: Any) -> Any:
    return message.raw_message


class _NoConsumer:
    """The runtime commits offsets itself (AckPolicy.MANUAL); FastStream's message never does."""

    async def commit(self) -> None:
        return None

    def seek(self, partition: TopicPartition, offset: int) -> None:
        return None


_NO_CONSUMER = _NoConsumer()


@dataclass
class Subscription(Generic[E]):
    contract: Contract[E]
    handler: Handler
    on_rejected: RejectedHandler | None
    stats: dict[str, int] = field(default_factory=lambda: {"consumed": 0, "processed": 0, "dead_lettered": 0})

    @property
    def topic(self) -> Topic:
        return self.contract.topic


Reads = list[Delivery[Any] | Rejected]
"""One topic's records of a consumed batch, read by its contract, in offset order per partition."""


def _earliest(records: Sequence[ConsumerRecord[Any, Any]]) -> dict[TopicPartition, int]:
    earliest: dict[TopicPartition, int] = {}
    for record in records:
        tp = TopicPartition(record.topic, record.partition)
        earliest[tp] = min(earliest.get(tp, record.offset), record.offset)
    return earliest


def _next_offsets(records: Sequence[ConsumerRecord[Any, Any]]) -> dict[TopicPartition, int]:
    latest: dict[TopicPartition, int] = {}
    for record in records:
        tp = TopicPartition(record.topic, record.partition)
        latest[tp] = max(latest.get(tp, record.offset), record.offset + 1)
    return latest


class ServiceRuntime(Generic[R]):
    def __init__(
        self,
        name: str,
        settings: CommonSettings,
        *,
        schema: str,
        repositories: Callable[[Connection], R] | None = None,
        group: str | None = None,
    ) -> None:
        self.name = name
        self.settings = settings
        self.schema = schema
        self.repositories = repositories
        self.source = service_source(name)
        # The consumer group (and the inbox's consumer): the service's, or one of its own for an
        # instance limited to part of the work (eligibility's scheme families, shared/acl.py).
        self.group = group or f"clustergrants.{name}"
        self.pool: asyncpg.Pool | None = None
        self.producer: AIOKafkaProducer | None = None
        self.relay: OutboxRelay | None = None
        self.metrics = Metrics(name)
        self.broker = KafkaBroker(
            settings.kafka_bootstrap_servers,
            client_id=f"clustergrants-{name}",
            logger=None,
            security=security(settings),
            consumer_only=True,  # the relay produces; FastStream needs no producer or admin client of its own
            allow_auto_create_topics=False,  # topics are declared (shared/topics.py), never created by a consumer
            middlewares=[partial(_RewindOnError, self)],
        )
        self.subscriptions: dict[str, Subscription[Any]] = {}
        self._subscriber: Any = None  # FastStream's one batch subscriber to every topic, made at start()
        self.startup: list[Callable[[asyncpg.Pool], Awaitable[None]]] = []
        # Called after each committed batch of consumed records (e.g. wake a worker that reads
        # what the batch wrote: before the commit it would not see it).
        self.after_commit: list[Callable[[], None]] = []
        self.ops = OpsServer(settings.ops_http_host, settings.ops_http_port, self.readiness, self.metrics, self._observe)
        self._stopping = asyncio.Event()
        # Fault injection for crash tests: exit abruptly after the N-th committed batch of consumed
        # records, i.e. after the database commit and before the Kafka offset commit.
        self._exit_after_commits = settings.clustergrants_fault_exit_after_commits
        self._commits = 0
        self._dlt_consumer: AIOKafkaConsumer | None = None
        self._redrive_task: asyncio.Task[None] | None = None
        self._lag_task: asyncio.Task[None] | None = None

    # -- wiring --------------------------------------------------------------------------------

    def on(
        self,
        model: type[E],
        handler: Handler,
        *,
        parse: Callable[[bytes], Any] | None = None,
        on_rejected: RejectedHandler | None = None,
    ) -> Subscription[E]:
        """Consume `model`'s topic in this service's consumer group, a batch at a time.

        `handler(uow, deliveries)` gets the batch's new events; `parse` replaces the model's own JSON
        validation of the data (it raises `shared.records.InvalidData`); `on_rejected(uow, rejected)`
        answers unreadable records the way the topic's contract says (default: park them)."""
        if self._subscriber is not None:
            raise RuntimeError("register every handler before start(): the service has one consumer for all its topics")
        contract = Contract.of(model, parse)
        name = topic_name(contract.topic, self.settings.topic_prefix)
        if name in self.subscriptions:
            raise ValueError(f"{contract.topic.value} has a handler already")
        subscription: Subscription[E] = Subscription(contract, handler, on_rejected)
        self.subscriptions[name] = subscription
        return subscription

    def _subscribe(self) -> None:
        """One FastStream batch subscriber, hence one Kafka consumer, for every topic with a handler."""
        if not self.subscriptions or self._subscriber is not None:
            return

        async def on_batch(records: Any) -> None:
            await self._consume(tuple(records))

        self._subscriber = self.broker.subscriber(
            *self.subscriptions,
            group_id=self.group,
            auto_offset_reset="earliest",
            ack_policy=AckPolicy.MANUAL,  # the runtime commits the offsets, after the database commit
            parser=_records_as_body,
            decoder=_records,
            batch=True,
            max_records=self.settings.consumer_batch_max,
            batch_timeout_ms=self.settings.consumer_batch_timeout_ms,
            title=f"{self.name}:" + ",".join(sub.topic.value for sub in self.subscriptions.values()),
        )
        self._subscriber(on_batch)

    @property
    def consumer(self) -> AIOKafkaConsumer | None:
        """The service's consumer (None before start)."""
        return getattr(self._subscriber, "consumer", None)

    def unit_of_work(self, conn: Connection) -> UnitOfWork[R]:
        repo = self.repositories(conn) if self.repositories is not None else None
        # (ignore below) None only when R is None
        return UnitOfWork(conn=conn, schema=self.schema, source=self.source, repo=repo, buffered=True)  # type: ignore[arg-type]

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[UnitOfWork[R]]:
        """One transaction outside consumption (an HTTP request, a command): state and outbox together."""
        assert self.pool is not None and self.relay is not None
        async with self.pool.acquire() as conn, conn.transaction():
            uow = self.unit_of_work(conn)
            yield uow
            published = uow.published
            await uow.flush()
        if published:
            self.relay.wake()

    # -- consuming a batch -------------------------------------------------------------------------

    def _group(self, records: Sequence[ConsumerRecord[Any, Any]]) -> list[tuple[Subscription[Any], Reads]]:
        """The batch's records by topic, read by each topic's contract, in the order of registration."""
        by_topic: dict[str, list[ConsumerRecord[Any, Any]]] = {}
        for record in records:
            by_topic.setdefault(record.topic, []).append(record)
        return [
            (sub, [read(record, sub.contract) for record in by_topic[name]])
            for name, sub in self.subscriptions.items()
            if name in by_topic
        ]

    async def _consume(self, records: tuple[ConsumerRecord[Any, Any], ...]) -> None:
        if not records:
            return
        started = time.perf_counter()
        groups = self._group(records)
        for sub, reads in groups:
            self.metrics.consumed.labels(sub.topic.value).inc(len(reads))
            sub.stats["consumed"] += len(reads)
        first = records[0]
        topics = ",".join(sub.topic.value for sub, _ in groups)
        with (
            span(
                f"{first.topic} process",
                context_from(first.headers),
                SpanKind.CONSUMER,
                **{
                    "messaging.system": "kafka",
                    "messaging.destination.name": first.topic,
                    "messaging.batch.message_count": len(records),
                },
            ),
            structlog.contextvars.bound_contextvars(topic=topics, batch=len(records)),
        ):
            try:
                try:
                    published = await self._handle_batch(groups)
                except Exception as error:
                    if is_transient(error):
                        raise
                    log.warning("batch failed; handling its records one at a time", error=describe_error(error))
                    published = await self._handle_one_by_one(groups)
            except Exception as error:
                # Infrastructure away (or a bug outside the handlers): nothing is parked, nothing skipped.
                self._rewind(records, "infrastructure" if is_transient(error) else "error", error)
                await asyncio.sleep(min(5.0, max(0.2, self.settings.handler_retry_backoff_s * 5)))
                return
        per_record = (time.perf_counter() - started) / len(records)
        for sub, _ in groups:
            self.metrics.latency.labels(sub.topic.value).observe(per_record)
        if published and self.relay is not None:
            self.relay.wake()
        for hook in self.after_commit:
            hook()
        self._after_commit()
        await self._commit_offsets(records)

    def _rewind(self, records: Sequence[ConsumerRecord[Any, Any]], cause: str, error: BaseException) -> None:
        """Seek back to the batch's first record on each partition this process still owns."""
        consumer = self.consumer
        assigned = consumer.assignment() if consumer is not None else set()
        for tp, offset in _earliest(records).items():
            if tp in assigned:
                assert consumer is not None
                consumer.seek(tp, offset)
        for name in dict.fromkeys(record.topic for record in records):
            sub = self.subscriptions.get(name)
            self.metrics.redelivered.labels(sub.topic.value if sub is not None else name, cause).inc()
        log.warning(
            "batch rolled back; it will be read again"
            if cause == "infrastructure"
            else "batch failed outside any handler; it will be read again",
            cause=cause,
            error=describe_error(error),
            records=len(records),
        )

    async def _commit_offsets(self, records: Sequence[ConsumerRecord[Any, Any]]) -> None:
        consumer = self.consumer
        if consumer is None:
            return
        assigned = consumer.assignment()
        offsets = {tp: OffsetAndMetadata(offset, "") for tp, offset in _next_offsets(records).items() if tp in assigned}
        if not offsets:
            return
        try:
            await consumer.commit(offsets)
        except KafkaError as error:
            # The group moved on (a rebalance, or this process was paused past its session): the new owner
            # reads these records again and its inbox drops what this transaction already did.
            log.warning("offset commit refused; the records will be redelivered", error=describe_error(error))

    async def _claim(self, uow: UnitOfWork[R], reads: Sequence[Delivery[Any] | Rejected]) -> list[Delivery[Any] | Rejected]:
        claimed = await claim_all(uow.conn, self.schema, self.group, [r.identity for r in reads])
        fresh: list[Delivery[Any] | Rejected] = []
        for r in reads:
            if r.identity in claimed:
                claimed.discard(r.identity)  # a second copy in the same batch is a duplicate too
                fresh.append(r)
        return fresh

    async def _dispose(self, sub: Subscription[Any], uow: UnitOfWork[R], rejected: list[Rejected]) -> None:
        """Rejected records: the topic's contract answers the unreadable ones; the rest are parked."""
        topic = sub.topic.value
        for r in rejected:
            self.metrics.rejected.labels(topic, r.kind, r.reason).inc()
            log.warning(
                "record refused by the topic's contract",
                kind=r.kind,
                reason=r.reason,
                position=str(r.position),
                error=r.describe(),
            )
        answerable = [r for r in rejected if r.kind == "unreadable"] if sub.on_rejected is not None else []
        if answerable:
            assert sub.on_rejected is not None
            await sub.on_rejected(uow, answerable)
        await self._park_all(
            sub, uow, [(r.record, r.identity, r.describe(), f"Rejected:{r.reason}", 1) for r in rejected if r not in answerable]
        )

    async def _park(
        self,
        sub: Subscription[Any],
        uow: UnitOfWork[R],
        record: ConsumerRecord[Any, Any],
        identity: tuple[str, str],
        reason: str,
        error_type: str,
        attempts: int,
    ) -> None:
        await self._park_all(sub, uow, [(record, identity, reason, error_type, attempts)])

    async def _park_all(
        self,
        sub: Subscription[Any],
        uow: UnitOfWork[R],
        parked: Sequence[tuple[ConsumerRecord[Any, Any], tuple[str, str], str, str, int]],
    ) -> None:
        """Park records (record, identity, reason, error type, attempts): their dead-letter copies into
        the unit of work's outbox, and their rows in `parked` with ONE statement."""
        if not parked:
            return
        for record, _, reason, error_type, attempts in parked:
            uow.park(record, group=self.group, reason=reason, error_type=error_type, attempts=attempts)
        # The last row of an identity given twice wins, as one statement per record did (ON CONFLICT
        # cannot touch a row twice in one statement).
        latest = {identity: (record, reason) for record, identity, reason, _, _ in parked}
        await uow.conn.execute(
            f"""INSERT INTO {self.schema}.parked (consumer, source, event_id, topic, partition, "offset", reason)
                SELECT $1, b.source, b.event_id, b.topic, b.partition, b."offset", b.reason
                FROM unnest($2::text[], $3::text[], $4::text[], $5::int[], $6::bigint[], $7::text[])
                     AS b(source, event_id, topic, partition, "offset", reason)
                ON CONFLICT (consumer, source, event_id) DO UPDATE
                SET topic = EXCLUDED.topic, partition = EXCLUDED.partition, "offset" = EXCLUDED."offset",
                    reason = EXCLUDED.reason, parked_at = now(), redriven_at = NULL""",
            self.group,
            [identity[0] for identity in latest],
            [identity[1] for identity in latest],
            [record.topic for record, _ in latest.values()],
            [record.partition for record, _ in latest.values()],
            [record.offset for record, _ in latest.values()],
            [reason[:2000] for _, reason in latest.values()],
        )
        self.metrics.dead_lettered.labels(sub.topic.value).inc(len(parked))
        sub.stats["dead_lettered"] += len(parked)
        for record, _, _, error_type, _ in parked:
            log.warning("record parked on the dead-letter topic", position=str(position_of(record)), error_type=error_type)

    async def _fresh(
        self, uow: UnitOfWork[R], groups: list[tuple[Subscription[Any], Reads]]
    ) -> list[tuple[Subscription[Any], Reads]]:
        """Claim the whole batch's identities with one statement; each topic keeps its new records."""
        fresh = {id(r) for r in await self._claim(uow, [r for _, reads in groups for r in reads])}
        kept: list[tuple[Subscription[Any], Reads]] = []
        for sub, reads in groups:
            mine = [r for r in reads if id(r) in fresh]
            self._count_duplicates(sub, len(reads) - len(mine))
            kept.append((sub, mine))
        return kept

    async def _handle_batch(self, groups: list[tuple[Subscription[Any], Reads]]) -> bool:
        assert self.pool is not None
        processed: list[tuple[Subscription[Any], int]] = []
        async with self.pool.acquire() as conn, conn.transaction():
            uow = self.unit_of_work(conn)
            for sub, fresh in await self._fresh(uow, groups):
                deliveries = [r for r in fresh if isinstance(r, Delivery)]
                rejected = [r for r in fresh if isinstance(r, Rejected)]
                if rejected:
                    await self._dispose(sub, uow, rejected)
                if deliveries:
                    await sub.handler(uow, deliveries)
                processed.append((sub, len(deliveries)))
            published = uow.published
            await uow.flush()
        for sub, count in processed:
            self.metrics.processed.labels(sub.topic.value).inc(count)
            sub.stats["processed"] += count
        return published

    async def _handle_one_by_one(self, groups: list[tuple[Subscription[Any], Reads]]) -> bool:
        """The batch failed: each record in its own savepoint, retried, and parked if it keeps failing."""
        assert self.pool is not None
        max_attempts = self.settings.handler_max_attempts
        processed: list[tuple[Subscription[Any], int]] = []
        async with self.pool.acquire() as conn, conn.transaction():
            uow = self.unit_of_work(conn)
            for sub, fresh in await self._fresh(uow, groups):
                rejected = [r for r in fresh if isinstance(r, Rejected)]
                if rejected:
                    await self._dispose(sub, uow, rejected)
                count = 0
                for delivery in (r for r in fresh if isinstance(r, Delivery)):
                    with structlog.contextvars.bound_contextvars(event_id=delivery.event_id, position=str(delivery.position)):
                        count += await self._handle_alone(sub, uow, delivery, max_attempts)
                processed.append((sub, count))
            published = uow.published
            await uow.flush()
        for sub, count in processed:
            self.metrics.processed.labels(sub.topic.value).inc(count)
            sub.stats["processed"] += count
        return published

    async def _handle_alone(self, sub: Subscription[Any], uow: UnitOfWork[R], delivery: Delivery[Any], max_attempts: int) -> int:
        """One record in a savepoint, retried; parked if it keeps failing. 1 if it was processed."""
        conn = uow.conn
        # What the records before it published goes to the outbox first: a handler may write events
        # to it itself (`UnitOfWork.publish_by_statement`), and the outbox keeps the order of publishing.
        await uow.flush()
        for attempt in range(1, max_attempts + 1):
            alone = self.unit_of_work(conn)
            try:
                async with conn.transaction():  # a savepoint
                    await sub.handler(alone, [delivery])
                uow.absorb(alone)
                return 1
            except PoisonMessage as error:
                await self._park(sub, uow, delivery.record, delivery.identity, describe_error(error), "PoisonMessage", attempt)
                return 0
            except Exception as error:
                if is_transient(error):
                    raise
                if attempt == max_attempts:
                    log.error("handler failed; parking the record", attempts=attempt, error=describe_error(error))
                    await self._park(
                        sub, uow, delivery.record, delivery.identity, describe_error(error), type(error).__name__, attempt
                    )
                    return 0
                self.metrics.retried.labels(sub.topic.value).inc()
                log.warning("handler failed; retrying", attempt=attempt, error=describe_error(error))
                await asyncio.sleep(self.settings.handler_retry_backoff_s * 2 ** (attempt - 1))
        return 0

    def _count_duplicates(self, sub: Subscription[Any], count: int) -> None:
        if count:
            self.metrics.duplicates.labels(sub.topic.value).inc(count)
            log.info("duplicate deliveries ignored", count=count)

    def _after_commit(self) -> None:
        if self._exit_after_commits:
            self._commits += 1
            if self._commits >= self._exit_after_commits:
                log.warning("fault injection: exiting between database commit and offset commit")
                os._exit(70)

    # -- redriving parked records ------------------------------------------------------------------

    async def _redrive_loop(self) -> None:
        """Take the operator's redrive requests (`clustergrants dead-letters redrive`) one at a time."""
        while True:
            try:
                took = await self.redrive_next()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.warning("redrive interrupted; retrying", error=describe_error(error))
                took = False
                await asyncio.sleep(1.0)
            if not took:
                await asyncio.sleep(self.settings.outbox_poll_interval_s * 2)

    async def redrive_next(self) -> bool:
        """Process the oldest pending redrive request of this service; False if there is none.

        The parked copy is re-read from the dead-letter topic, put back as the original record (its
        topic, partition, offset, key, headers and value), its claim is forgotten, and it runs through
        the contract and handler again, in ONE transaction with the request's outcome. So a redrive
        happens once, and a record that fails again is parked again, not lost."""
        assert self.pool is not None and self.relay is not None
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                f"""SELECT id, dlt_partition, dlt_offset FROM {self.schema}.redrive_requests
                    WHERE done_at IS NULL ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED"""
            )
            if row is None:
                return False
            uow = self.unit_of_work(conn)
            with structlog.contextvars.bound_contextvars(redrive=f"{row['dlt_partition']}:{row['dlt_offset']}"):
                dead = await self._dead_letter(row["dlt_partition"], row["dlt_offset"])
                outcome = "not found: the dead letter is gone (retention)" if dead is None else await self._redrive(uow, dead)
                log.info("redrive done", outcome=outcome)
            await conn.execute(
                f"UPDATE {self.schema}.redrive_requests SET done_at = now(), outcome = $2 WHERE id = $1", row["id"], outcome
            )
            published = uow.published
            await uow.flush()
        if published:
            self.relay.wake()
        return True

    async def _dead_letter(self, partition: int, offset: int) -> ConsumerRecord[Any, Any] | None:
        if self._dlt_consumer is None:
            consumer = AIOKafkaConsumer(**client_options(self.settings), enable_auto_commit=False)
            await consumer.start()
            self._dlt_consumer = consumer
        tp = TopicPartition(topic_name(Topic.DEAD_LETTER, self.settings.topic_prefix), partition)
        self._dlt_consumer.assign([tp])
        self._dlt_consumer.seek(tp, offset)
        batch = await self._dlt_consumer.getmany(tp, timeout_ms=5000, max_records=1)
        records = batch.get(tp, [])
        return records[0] if records and records[0].offset == offset else None

    async def _redrive(self, uow: UnitOfWork[R], dead: ConsumerRecord[Any, Any]) -> str:
        headers = dict(dead.headers or ())
        meta = {name: (value or b"").decode(errors="replace") for name, value in headers.items() if name.startswith("cg_dlt_")}
        if meta.get("cg_dlt_group") != self.group:
            return f"refused: parked by {meta.get('cg_dlt_group', 'nobody')[:80]!r}, not by {self.group}"
        if meta.get("cg_dlt_truncated") == "true":
            return "refused: a truncated copy (the record was too large to park whole)"
        sub = self.subscriptions.get(meta.get("cg_dlt_topic", ""))
        if sub is None:
            return f"refused: this service does not consume {meta.get('cg_dlt_topic', '?')[:120]!r}"
        try:
            partition, offset = int(meta["cg_dlt_partition"]), int(meta["cg_dlt_offset"])
        except (KeyError, ValueError):
            return "refused: the dead letter does not say where it came from"
        original = ConsumerRecord(
            meta["cg_dlt_topic"],
            partition,
            offset,
            dead.timestamp,
            dead.timestamp_type,
            dead.key,
            dead.value,
            None,
            dead.serialized_key_size,
            dead.serialized_value_size,
            tuple((name, value) for name, value in (dead.headers or ()) if not name.startswith("cg_dlt_")),
        )
        again = read(original, sub.contract)
        conn = uow.conn
        parked = await conn.fetchval(
            f"""UPDATE {self.schema}.parked SET redriven_at = now()
                WHERE consumer = $1 AND source = $2 AND event_id = $3 AND redriven_at IS NULL RETURNING true""",
            self.group,
            *again.identity,
        )
        if not parked:
            return "refused: not parked now (redriven before, or never parked by this service)"
        await unclaim(conn, self.schema, self.group, again.identity)
        await self._claim(uow, [again])
        if isinstance(again, Rejected):
            await self._dispose(sub, uow, [again])
            return f"refused by the contract again: {again.reason}"
        await uow.flush()  # as in _handle_alone: the outbox keeps the order of publishing
        alone = self.unit_of_work(conn)
        try:
            async with conn.transaction():
                await sub.handler(alone, [again])
            uow.absorb(alone)
        except Exception as error:
            if is_transient(error):
                raise
            await self._park(sub, uow, original, again.identity, describe_error(error), type(error).__name__, 1)
            return f"parked again: {describe_error(error)[:300]}"
        self.metrics.processed.labels(sub.topic.value).inc()
        return "processed"

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
            self.metrics.outbox_backlog.set(await self.relay.backlog())
        consumer = self.consumer
        if consumer is None:
            return
        lag = dict.fromkeys(self.subscriptions, 0)
        for tp in consumer.assignment():
            highwater = consumer.highwater(tp)
            if highwater is not None and tp.topic in lag:
                lag[tp.topic] += max(0, highwater - await consumer.position(tp))
        for name, sub in self.subscriptions.items():
            self.metrics.consumer_lag.labels(sub.topic.value).set(lag[name])

    async def _sample_loop_lag(self) -> None:
        """Observe how late a timer fires: a handler that holds the loop for 80 ms makes every send and
        read of the process wait up to 80 ms (clustergrants_event_loop_lag_seconds)."""
        loop = asyncio.get_running_loop()
        while True:
            asked = loop.time()
            await asyncio.sleep(LOOP_LAG_SAMPLE_S)
            self.metrics.loop_lag.observe(max(0.0, loop.time() - asked - LOOP_LAG_SAMPLE_S))

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
                linger_ms=5,
                max_batch_size=1 << 20,
                max_request_size=MAX_RECORD_BYTES,  # the relay sets a larger record aside
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
        self._subscribe()
        await self.broker.connect()
        self._use_resilient_consumers()
        await self.broker.start()
        if self.subscriptions:
            self._redrive_task = asyncio.create_task(self._redrive_loop(), name=f"redrive-{self.name}")
        self._lag_task = asyncio.create_task(self._sample_loop_lag(), name=f"loop-lag-{self.name}")
        log.info(
            "service started",
            topics=[sub.topic.value for sub in self.subscriptions.values()],
            group=self.group,
            ops_port=s.ops_http_port,
        )

    def _use_resilient_consumers(self) -> None:
        """Subscribers build their consumers with FastStream's builder: same options, our class."""
        config = self.broker.config.broker_config
        builder = config.builder
        if isinstance(builder, partial) and builder.func is AIOKafkaConsumer:
            config.builder = partial(
                ResilientConsumer, *builder.args, **builder.keywords, linger_ms=self.settings.consumer_linger_ms
            )
        else:  # pragma: no cover - a FastStream upgrade changed how consumers are built
            raise RuntimeError("FastStream no longer builds consumers with partial(AIOKafkaConsumer, ...): revisit")

    async def stop(self) -> None:
        if self._lag_task is not None:
            self._lag_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._lag_task
        if self._redrive_task is not None:
            self._redrive_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._redrive_task
        if self._dlt_consumer is not None:
            with contextlib.suppress(Exception):
                await self._dlt_consumer.stop()
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

    async def run(self, *extra: Callable[[asyncio.Event], Coroutine[Any, Any, None]]) -> None:
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


class _RewindOnError(BaseMiddleware):
    """Backstop for errors outside the runtime's own handling (FastStream, a decoder, a middleware): the
    consumed batch is rewound, logged and counted, so the next offset commit cannot skip it."""

    def __init__(self, runtime: ServiceRuntime[Any], msg: Any | None, /, *, context: Any) -> None:
        super().__init__(msg, context=context)
        self.runtime = runtime

    async def __aexit__(self, exc_type: Any = None, exc_val: BaseException | None = None, exc_tb: Any = None) -> bool | None:
        if exc_val is not None and not isinstance(exc_val, asyncio.CancelledError):
            records = self.msg if isinstance(self.msg, tuple) else (self.msg,)
            records = tuple(r for r in records if isinstance(r, ConsumerRecord))
            if records:
                self.runtime._rewind(records, "framework", exc_val)
            else:
                log.error("consumed batch failed outside the runtime", error=describe_error(exc_val))
        return await super().__aexit__(exc_type, exc_val, exc_tb)
