"""Delivery that loses nothing and doubles nothing: inbox, outbox, relay, bounded retries, dead letters.

The shape (see ../shared/notes/KAFKA_AND_DELIVERY.md, and eventsourcing's tracking table):

* A consumer claims the event id in `<schema>.inbox` (primary key: a second claim inserts nothing),
  changes its state and writes its outgoing events into `<schema>.outbox`, all in ONE PostgreSQL
  transaction (`ServiceRuntime.transaction`; a batch of records shares one, with a savepoint each).
  A redelivered event finds its id claimed and changes nothing.
* The offset is committed only after that transaction (FastStream `AckPolicy.NACK_ON_ERROR`):
  a crash in between redelivers the event, and the inbox makes the redelivery a no-op.
* `OutboxRelay` publishes outbox rows in id order with an idempotent producer (acks=all) and deletes
  them once the broker acknowledged them. One relay per schema holds an advisory lock, so replicas
  never interleave. A crash between publish and delete re-publishes with the SAME CloudEvents id;
  consumers' inboxes drop the copy: at-least-once on the wire, exactly-once in effect.
* A handler that raises is retried `handler_max_attempts` times with doubling back-off, then the
  message is parked on the dead-letter topic with the error and the partition moves on. Messages
  that can never succeed (`PoisonMessage`: unreadable or invalid body) are parked at once. Errors
  of the infrastructure itself (database or broker unreachable) are not the message's fault: the
  message is not parked but redelivered once the infrastructure is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import asyncpg
import structlog
from aiokafka import AIOKafkaProducer, ConsumerRecord
from aiokafka.errors import KafkaError
from opentelemetry.trace import SpanKind
from pydantic import ValidationError

from shared.cloudevents import Attributes, Headers, attributes_for, from_headers, to_headers
from shared.events import Event
from shared.topics import Topic, topic_name
from shared.tracing import context_from, current_trace_id, span, traceparent_headers

log = structlog.get_logger("delivery")

E = TypeVar("E", bound=Event)

RELAY_LOCK_NAMESPACE = 727_002


class PoisonMessage(Exception):
    """The message can never be processed (unreadable, or not the contract): park it at once."""

    def __init__(self, reason: str, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.errors = errors or []


def validation_errors(error: ValidationError) -> list[dict[str, Any]]:
    """Pydantic errors without the offending input (it may be personal data)."""
    return [{"loc": list(e["loc"]), "type": e["type"], "message": e["msg"]} for e in error.errors(include_input=False)]


def describe_error(error: BaseException) -> str:
    """A log- and header-safe description: never the input values of a validation error."""
    if isinstance(error, PoisonMessage):
        detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['type']}" for e in error.errors[:20])
        return f"{error.reason}{': ' + detail if detail else ''}"
    if isinstance(error, ValidationError):
        return f"ValidationError: {len(error.errors())} error(s) at " + ", ".join(
            ".".join(map(str, e["loc"])) for e in error.errors()[:20]
        )
    return f"{type(error).__name__}: {str(error)[:500]}"


def is_transient(error: BaseException) -> bool:
    """Infrastructure errors: the message is fine, the database or broker is not (yet). Deadlocks and
    serialisation failures also say nothing about the message: its batch is rolled back and redone."""
    return isinstance(
        error,
        asyncpg.PostgresConnectionError
        | asyncpg.InterfaceError
        | asyncpg.CannotConnectNowError
        | asyncpg.TooManyConnectionsError
        | asyncpg.AdminShutdownError
        | asyncpg.CrashShutdownError
        | asyncpg.DeadlockDetectedError
        | asyncpg.SerializationError
        | ConnectionError
        | OSError
        | TimeoutError
        | KafkaError,
    )


# --- incoming messages ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Incoming:
    """One consumed Kafka record with its CloudEvents attributes (if it carries them)."""

    record: ConsumerRecord[Any, Any]
    attributes: Attributes | None

    @property
    def event_id(self) -> str:
        """The inbox key: the CloudEvents id, else the record's position (stable across redeliveries)."""
        if self.attributes is not None:
            return self.attributes.id
        return f"{self.record.topic}:{self.record.partition}:{self.record.offset}"

    @property
    def position(self) -> str:
        return f"{self.record.topic}:{self.record.partition}:{self.record.offset}"

    @property
    def correlation_id(self) -> str:
        if self.attributes is not None and self.attributes.correlationid:
            return self.attributes.correlationid
        return self.event_id

    @property
    def body(self) -> bytes:
        value = self.record.value
        return value if isinstance(value, bytes) else b""

    def parse(self, model: type[E]) -> E:
        """The body as `model`, or PoisonMessage naming every field error."""
        if self.attributes is not None and self.attributes.type != model.cloudevents_type():
            raise PoisonMessage(f"unexpected event type {self.attributes.type!r}, expected {model.cloudevents_type()!r}")
        try:
            return model.model_validate_json(self.body)
        except ValidationError as error:
            raise PoisonMessage(f"body is not a valid {model.__name__}", validation_errors(error)) from None


# --- outbox and inbox ------------------------------------------------------------------------------


async def claim(conn: asyncpg.Connection, schema: str, consumer: str, event_id: str) -> bool:
    """Record `event_id` as consumed by `consumer`; False if it already was (a redelivery)."""
    inserted = await conn.fetchval(
        f"INSERT INTO {schema}.inbox (consumer, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING true",
        consumer,
        event_id,
    )
    return bool(inserted)


async def enqueue(conn: asyncpg.Connection, schema: str, event: Event, attributes: Attributes) -> None:
    """Write `event` into the outbox, in the caller's transaction."""
    await conn.execute(
        f"INSERT INTO {schema}.outbox (event_id, topic, key, headers, payload) VALUES ($1, $2, $3, $4, $5)",
        attributes.id,
        event.topic.value,
        event.key(),
        [[name, value.decode()] for name, value in to_headers(attributes)] + [list(h) for h in traceparent_headers()],
        event.model_dump_json().encode(),
    )


@dataclass
class UnitOfWork:
    """One PostgreSQL transaction: the inbox claim, the state change and the outgoing events."""

    conn: asyncpg.Connection
    schema: str
    source: str
    cause: Incoming | None
    duplicate: bool = False
    published: list[str] = field(default_factory=list)

    async def publish(self, event: Event, *, event_id: str | None = None) -> str:
        attributes = attributes_for(
            event,
            source=self.source,
            event_id=event_id,
            correlation_id=self.cause.correlation_id if self.cause else None,
            causation_id=self.cause.event_id if self.cause else None,
        )
        await enqueue(self.conn, self.schema, event, attributes)
        self.published.append(attributes.id)
        return attributes.id


class OutboxRelay:
    """Publishes a schema's outbox rows in order, with an idempotent producer; one leader per schema."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        producer: AIOKafkaProducer,
        schema: str,
        *,
        prefix: str = "",
        batch_size: int = 500,
        poll_interval_s: float = 0.5,
    ) -> None:
        self.pool = pool
        self.producer = producer
        self.schema = schema
        self.prefix = prefix
        self.batch_size = batch_size
        self.poll_interval_s = poll_interval_s
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.published_total = 0

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"outbox-relay-{self.schema}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def backlog(self) -> int:
        return int(await self.pool.fetchval(f"SELECT count(*) FROM {self.schema}.outbox"))

    async def _run(self) -> None:
        while True:
            try:
                async with self.pool.acquire() as conn:
                    lock_key = await conn.fetchval("SELECT hashtext($1)", f"outbox:{self.schema}")
                    if not await conn.fetchval("SELECT pg_try_advisory_lock($1, $2)", RELAY_LOCK_NAMESPACE, lock_key):
                        await asyncio.sleep(self.poll_interval_s * 4)  # another replica relays this schema
                        continue
                    try:
                        await self._relay_while_leader(conn)
                    finally:
                        with contextlib.suppress(Exception):
                            await conn.execute("SELECT pg_advisory_unlock($1, $2)", RELAY_LOCK_NAMESPACE, lock_key)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.warning("outbox relay interrupted; retrying", schema=self.schema, error=describe_error(error))
                await asyncio.sleep(1.0)

    async def _relay_while_leader(self, conn: asyncpg.Connection) -> None:
        while True:
            sent = await self.relay_once(conn)
            if sent < self.batch_size:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=self.poll_interval_s)

    async def relay_once(self, conn: asyncpg.Connection) -> int:
        rows = await conn.fetch(
            f"SELECT id, topic, key, headers, payload FROM {self.schema}.outbox ORDER BY id LIMIT $1",
            self.batch_size,
        )
        if not rows:
            return 0
        futures = [
            await self.producer.send(
                topic_name(Topic(row["topic"]), self.prefix),
                value=bytes(row["payload"]),
                key=row["key"].encode(),
                headers=[(name, value.encode()) for name, value in row["headers"]],
            )
            for row in rows
        ]
        await asyncio.gather(*futures)
        await conn.execute(f"DELETE FROM {self.schema}.outbox WHERE id = ANY($1::bigint[])", [r["id"] for r in rows])
        self.published_total += len(rows)
        return len(rows)


# --- dead letters ---------------------------------------------------------------------------------


async def park(
    producer: AIOKafkaProducer, record: ConsumerRecord[Any, Any], *, prefix: str, group: str, error: BaseException, attempts: int
) -> None:
    """Copy `record` onto the dead-letter topic with where it came from and why it failed."""
    headers: Headers = list(record.headers or ())
    headers += [
        ("cg_dlt_topic", record.topic.encode()),
        ("cg_dlt_partition", str(record.partition).encode()),
        ("cg_dlt_offset", str(record.offset).encode()),
        ("cg_dlt_group", group.encode()),
        ("cg_dlt_attempts", str(attempts).encode()),
        ("cg_dlt_error_type", type(error).__name__.encode()),
        ("cg_dlt_error", describe_error(error)[:2000].encode()),
        ("cg_dlt_parked_at", datetime.now(UTC).isoformat().encode()),
    ]
    value = record.value if isinstance(record.value, bytes) else None
    key = record.key if isinstance(record.key, bytes) else None
    await producer.send_and_wait(topic_name(Topic.DEAD_LETTER, prefix), value=value, key=key, headers=headers)


Handler = Callable[[Incoming], Awaitable[None]]


@dataclass
class ConsumeStats:
    """Counts of one subscription, mirrored into Prometheus when `metrics` (shared.ops.Metrics) is set."""

    topic: str = ""
    service: str = ""
    metrics: Any = None
    consumed: int = 0
    processed: int = 0
    retried: int = 0
    dead_lettered: int = 0

    def count(self, what: str, seconds: float | None = None) -> None:
        setattr(self, what, getattr(self, what) + 1)
        if self.metrics is not None:
            getattr(self.metrics, what).labels(self.service, self.topic).inc()
            if seconds is not None:
                self.metrics.latency.labels(self.service, self.topic).observe(seconds)


async def consume(
    record: ConsumerRecord[Any, Any],
    handler: Handler,
    *,
    producer: AIOKafkaProducer,
    prefix: str,
    group: str,
    max_attempts: int,
    backoff_s: float,
    stats: ConsumeStats,
) -> None:
    """Run `handler` on one record with bounded retries; park it if it keeps failing.

    Returns normally when the record is done (processed or parked): the offset may be committed.
    Raises only for infrastructure errors, so that the record is redelivered, not lost or parked.
    """
    incoming = Incoming(record=record, attributes=from_headers(record.headers))
    stats.count("consumed")
    started = time.perf_counter()
    with (
        span(
            f"{record.topic} process",
            context_from(record.headers),
            SpanKind.CONSUMER,
            **{"messaging.system": "kafka", "messaging.destination.name": record.topic, "messaging.kafka.offset": record.offset},
        ),
        structlog.contextvars.bound_contextvars(
            trace_id=current_trace_id(),
            event_id=incoming.event_id,
            correlation_id=incoming.correlation_id,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            kafka_key=record.key.decode(errors="replace") if isinstance(record.key, bytes) else None,
        ),
    ):
        attempt = 0
        while True:
            attempt += 1
            try:
                await handler(incoming)
                stats.count("processed", time.perf_counter() - started)
                return
            except PoisonMessage as error:
                log.warning("message cannot be processed; parking it", error=describe_error(error))
                await park(producer, record, prefix=prefix, group=group, error=error, attempts=attempt)
                stats.count("dead_lettered")
                return
            except Exception as error:
                if is_transient(error):
                    log.warning("infrastructure unavailable; message will be redelivered", error=describe_error(error))
                    await asyncio.sleep(min(5.0, backoff_s * 2 ** min(attempt, 5)))
                    raise
                if attempt >= max_attempts:
                    log.error("handler failed; parking the message", attempts=attempt, error=describe_error(error))
                    await park(producer, record, prefix=prefix, group=group, error=error, attempts=attempt)
                    stats.count("dead_lettered")
                    return
                stats.count("retried")
                log.warning("handler failed; retrying", attempt=attempt, error=describe_error(error))
                await asyncio.sleep(backoff_s * 2 ** (attempt - 1))
