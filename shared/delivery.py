"""Delivery that loses nothing and doubles nothing: inbox, outbox, relay, dead letters.

The shape (see ../shared/notes/KAFKA_AND_DELIVERY.md, and eventsourcing's tracking table):

* A consumer claims each consumed event's identity, `(source, id)` as CloudEvents defines it, in
  `<schema>.inbox` (primary key: a second claim inserts nothing), changes its state and writes its
  outgoing events into `<schema>.outbox`, all in ONE PostgreSQL transaction. A consumed batch is
  claimed with one statement and its outgoing events are written with one statement
  (`ServiceRuntime` in shared/runtime.py). A redelivered event finds its identity claimed and
  changes nothing. A record with no readable identity is claimed by its place in the log.
* The offset is committed only after that transaction: a crash in between redelivers the batch,
  and the inbox makes the redelivery a no-op.
* `OutboxRelay` publishes outbox rows in id order with an idempotent producer (acks=all), through
  the producer's batch API (one batch per partition and round), and deletes them once the broker
  acknowledged them. One relay per schema holds an advisory lock, so replicas
  never interleave. A crash between publish and delete re-publishes with the SAME CloudEvents id;
  consumers' inboxes drop the copy: at-least-once on the wire, exactly-once in effect.
* A record that cannot be processed is parked: a copy of its raw key, headers and value goes to the
  dead-letter topic **through the outbox**, in the same transaction as its inbox claim, with where
  it came from and why (`cg_dlt_*` headers). So a parked record is parked exactly once, and the
  partition moves on. Errors of the infrastructure itself (database or broker unreachable) are not
  the record's fault: the batch is redelivered once the infrastructure is back, never parked.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic

import asyncpg
import structlog
from aiokafka import AIOKafkaProducer, ConsumerRecord
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from opentelemetry import context as otel_context
from typing_extensions import TypeVar

from shared.cloudevents import Attributes, attributes_for, to_headers
from shared.db import Connection
from shared.events import Event
from shared.records import Delivery, Rejected
from shared.topics import Topic, topic_name
from shared.tracing import context_from, traceparent_headers

log = structlog.get_logger("delivery")

# The repositories a unit of work carries; the services use none (None) and write UnitOfWork bare.
R = TypeVar("R", default=None)

RELAY_LOCK_NAMESPACE = 727_002
# Kafka's default largest record (message.max.bytes, max.request.size) less room for the batch header.
MAX_RECORD_BYTES = 1_000_000


class PoisonMessage(Exception):
    """A handler's verdict: this event can never be processed (it contradicts the state it meets)."""

    def __init__(self, reason: str, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.errors = errors or []


def describe_error(error: BaseException) -> str:
    """A log- and header-safe description: never the input values of a validation error."""
    if isinstance(error, PoisonMessage):
        detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['type']}" for e in error.errors[:20])
        return f"{error.reason}{': ' + detail if detail else ''}"
    from pydantic import ValidationError

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


# --- inbox -----------------------------------------------------------------------------------------


async def claim_all(conn: Connection, schema: str, consumer: str, identities: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
    """Claim every identity for `consumer` in one statement; returns those claimed now (new ones).

    An identity given twice is claimed once. Rows from before identities had a source (`source = ''`)
    still count as claims of their id, so events consumed before the upgrade stay consumed.
    """
    if not identities:
        return set()
    rows = await conn.fetch(
        f"""INSERT INTO {schema}.inbox (consumer, source, event_id)
            SELECT $1, b.source, b.event_id FROM unnest($2::text[], $3::text[]) AS b(source, event_id)
            WHERE NOT EXISTS (SELECT 1 FROM {schema}.inbox l
                              WHERE l.consumer = $1 AND l.source = '' AND l.event_id = b.event_id)
            ON CONFLICT DO NOTHING
            RETURNING source, event_id""",
        consumer,
        [source for source, _ in identities],
        [event_id for _, event_id in identities],
    )
    return {(r["source"], r["event_id"]) for r in rows}


async def claim(conn: Connection, schema: str, consumer: str, identity: tuple[str, str]) -> bool:
    """Claim one identity; False if it already was (a redelivery)."""
    return identity in await claim_all(conn, schema, consumer, [identity])


async def unclaim(conn: Connection, schema: str, consumer: str, identity: tuple[str, str]) -> bool:
    """Forget a claim (a parked record redriven by an operator: it is to be processed after all)."""
    deleted = await conn.fetchval(
        f"DELETE FROM {schema}.inbox WHERE consumer = $1 AND source IN ($2, '') AND event_id = $3 RETURNING true",
        consumer,
        *identity,
    )
    return bool(deleted)


# --- outbox ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OutboxRow:
    event_id: str
    topic: Topic
    key: str | None
    headers: list[list[str]]
    payload: bytes | None
    raw: bytes | None = None  # a dead-letter copy: the original key and headers, byte for byte


def event_row(
    event: Event,
    attributes: Attributes,
    trace: otel_context.Context | None = None,
    *,
    trace_headers: Sequence[tuple[str, str]] | None = None,
) -> OutboxRow:
    """The outbox row of an event; it carries the trace of `trace` (the cause's) or of the current span
    (`trace_headers`: those headers already worked out, for many events of one cause)."""
    headers = [[name, value.decode()] for name, value in to_headers(attributes)]
    headers += [[name, value] for name, value in (trace_headers if trace_headers is not None else traceparent_headers(trace))]
    return OutboxRow(attributes.id, event.topic, event.key(), headers, event.model_dump_json().encode())


def _b64(value: bytes | None) -> str | None:
    return None if value is None else base64.b64encode(value).decode()


def dead_letter_row(record: ConsumerRecord[Any, Any], *, group: str, reason: str, error_type: str, attempts: int) -> OutboxRow:
    """A copy of `record` for the dead-letter topic, with where it came from and why it was parked.

    The original key, headers and value are kept byte for byte (base64 in the outbox row); a value so
    large that the copy would not fit a Kafka record is cut, and the copy says so."""
    headers: list[tuple[str, bytes | None]] = [
        (name, value) for name, value in (record.headers or ()) if not name.startswith("cg_dlt_")
    ]
    value = record.value if isinstance(record.value, bytes) else None
    key = record.key if isinstance(record.key, bytes) else None
    size = len(value or b"") + len(key or b"") + sum(len(n) + len(v or b"") for n, v in headers)
    if key is None and value is None:  # only a record the client could not decode: Kafka needs one of them
        value = b""
    truncated = size > MAX_RECORD_BYTES - 4096
    if truncated:
        value = (value or b"")[:4096]
        headers = [(n, v) for n, v in headers if len(n) + len(v or b"") < 1024][:50]
    headers += [
        ("cg_dlt_topic", record.topic.encode()),
        ("cg_dlt_partition", str(record.partition).encode()),
        ("cg_dlt_offset", str(record.offset).encode()),
        ("cg_dlt_group", group.encode()),
        ("cg_dlt_attempts", str(attempts).encode()),
        ("cg_dlt_error_type", error_type.encode()),
        ("cg_dlt_error", reason[:2000].encode(errors="replace")),
        ("cg_dlt_parked_at", datetime.now(UTC).isoformat().encode()),
    ]
    if truncated:
        headers.append(("cg_dlt_truncated", b"true"))
    raw = json.dumps({"key": _b64(key), "headers": [[_b64(n.encode()), _b64(v)] for n, v in headers]}).encode()
    return OutboxRow(str(uuid.uuid4()), Topic.DEAD_LETTER, None, [], value, raw)


async def write_outbox(conn: Connection, schema: str, rows: Sequence[OutboxRow]) -> None:
    """Insert the rows in one statement, in the caller's transaction, in their order."""
    if not rows:
        return
    await conn.execute(
        f"""INSERT INTO {schema}.outbox (event_id, topic, key, headers, payload, raw)
            SELECT e, t, k, h::jsonb, p, r
            FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::bytea[], $6::bytea[]) AS b(e, t, k, h, p, r)""",
        [r.event_id for r in rows],
        [r.topic.value for r in rows],
        [r.key for r in rows],
        [json.dumps(r.headers) for r in rows],
        [r.payload for r in rows],
        [r.raw for r in rows],
    )


async def enqueue(conn: Connection, schema: str, event: Event, attributes: Attributes) -> None:
    """Write one event into the outbox, in the caller's transaction."""
    await write_outbox(conn, schema, [event_row(event, attributes)])


Cause = Delivery[Any] | Rejected | None

#: An outbox row's headers for a statement to fill in (`UnitOfWork.publish_by_statement`): name and
#: value, the value None where the statement puts the event's own id (`ce_id`, and `ce_correlationid`
#: when the cause has none) or subject (`ce_subject`).
HeaderTemplate = list[tuple[str, str | None]]
FILLED_IN = frozenset({"ce_id", "ce_subject"})


@dataclass
class UnitOfWork(Generic[R]):
    """One PostgreSQL transaction: the inbox claims, the state change and the outgoing events.

    `repo` is the service's repositories bound to this transaction. The runtime's units of work
    (`buffered=True`) collect outgoing events and write them to the outbox in one statement when the
    transaction's work is done (`flush`); a unit of work built by hand (a command, a test) writes each
    event as it is published, so nothing depends on remembering to flush."""

    conn: Connection
    schema: str
    source: str
    repo: R = None  # type: ignore[assignment]  # R is None unless repositories are given
    cause: Cause = None  # the consumed record a command-built unit of work answers; None for commands
    buffered: bool = False
    outbox: list[OutboxRow] = field(default_factory=list)
    written: int = 0
    event_ids: list[str] = field(default_factory=list)  # of the events published in this unit of work

    async def publish(self, event: Event, *, cause: Cause = None, event_id: str | None = None) -> str:
        correlation_id, causation_id, trace = self._of_cause(cause)
        attributes = attributes_for(
            event, source=self.source, event_id=event_id, correlation_id=correlation_id, causation_id=causation_id
        )
        await self.add(event_row(event, attributes, trace_headers=trace))
        self.event_ids.append(attributes.id)
        return attributes.id

    def _of_cause(self, cause: Cause) -> tuple[str | None, str | None, list[tuple[str, str]]]:
        """What events of `cause` (else this unit of work's) carry of it: correlation id, causation id,
        trace headers."""
        cause = cause if cause is not None else self.cause
        if cause is None:
            return None, None, traceparent_headers(None)
        causation_id = cause.attributes.id if cause.attributes is not None else None
        return cause.correlation_id, causation_id, traceparent_headers(context_from(cause.record.headers))

    async def publish_by_statement(
        self, event_type: type[Event], write: Callable[[HeaderTemplate], Awaitable[int]], *, cause: Cause = None
    ) -> int:
        """Events of one type and cause that one SQL statement builds and writes into the outbox itself
        (tens of thousands at once: every grant a year's opening capped), so that they never pass
        through Python. `write` gets the headers each of them carries, as `publish` would write
        them, with the values of `ce_id` and `ce_subject` for the statement to fill in (and that of
        `ce_correlationid` where it is None: the event's own id), and returns how many rows it wrote.
        What was published before is written first: the outbox keeps the order of publishing."""
        await self.flush()
        correlation_id, causation_id, trace = self._of_cause(cause)
        attributes = Attributes(
            id="",
            source=self.source,
            type=event_type.cloudevents_type(),
            time=datetime.now(UTC).isoformat(),
            subject="",
            correlationid=correlation_id or "",
            causationid=causation_id,
        )
        headers: HeaderTemplate = [
            (name, None if name in FILLED_IN or (name == "ce_correlationid" and not correlation_id) else value.decode())
            for name, value in to_headers(attributes)
        ]
        headers += trace
        count = await write(headers)
        self.written += count
        return count

    async def add(self, row: OutboxRow) -> None:
        """An outbox row built by the caller (e.g. with attributes of its own)."""
        self.outbox.append(row)
        if not self.buffered:
            await self.flush()

    def absorb(self, part: UnitOfWork[Any]) -> None:
        """What a part of this transaction (a savepoint's own unit of work) published: the rows it still
        holds are written with this one's, and what it wrote itself counts as published here."""
        self.outbox.extend(part.outbox)
        self.written += part.written
        self.event_ids += part.event_ids

    def park(self, record: ConsumerRecord[Any, Any], *, group: str, reason: str, error_type: str, attempts: int) -> None:
        self.outbox.append(dead_letter_row(record, group=group, reason=reason, error_type=error_type, attempts=attempts))

    @property
    def published(self) -> bool:
        return bool(self.outbox) or self.written > 0

    async def flush(self) -> None:
        rows, self.outbox = self.outbox, []
        await write_outbox(self.conn, self.schema, rows)
        self.written += len(rows)


def _record_of(row: asyncpg.Record) -> tuple[bytes | None, list[tuple[str, bytes | None]]]:
    if row["raw"] is None:
        return row["key"].encode(), [(name, value.encode()) for name, value in json.loads(row["headers"])]
    raw = json.loads(row["raw"])
    key = base64.b64decode(raw["key"]) if raw["key"] is not None else None
    headers = [
        (base64.b64decode(n).decode(errors="replace"), base64.b64decode(v) if v is not None else None) for n, v in raw["headers"]
    ]
    return key, headers


#: The largest record the relay hands to Kafka: aiokafka's default `max_request_size`, which the services'
#: producers keep (a larger one is set aside in `outbox_failed`, as `send` would refuse it).
MAX_RECORD_BYTES = 1 << 20


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
        max_record_bytes: int = MAX_RECORD_BYTES,
    ) -> None:
        self.pool = pool
        self.producer = producer
        self.schema = schema
        self.prefix = prefix
        self.batch_size = batch_size
        self.poll_interval_s = poll_interval_s
        self.max_record_bytes = max_record_bytes  # the producer's max_request_size
        self._partitioner = DefaultPartitioner()
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
                        try:
                            await conn.execute("SELECT pg_advisory_unlock($1, $2)", RELAY_LOCK_NAMESPACE, lock_key)
                        except BaseException as error:
                            # The pool does not reset sessions (shared/db.py): a lock that may still be
                            # held must not go back to the pool with its connection.
                            conn.terminate()
                            if not isinstance(error, Exception):
                                raise
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.warning("outbox relay interrupted; retrying", schema=self.schema, error=describe_error(error))
                await asyncio.sleep(1.0)

    async def _relay_while_leader(self, conn: Connection) -> None:
        while True:
            # Cleared BEFORE the round: a commit that lands while the round runs sets it again, and the
            # next round starts at once instead of a poll interval later.
            self._wake.clear()
            sent = await self.relay_once(conn)
            if sent < self.batch_size:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=self.poll_interval_s)

    async def relay_once(self, conn: Connection) -> int:
        """Publish up to `batch_size` rows, in id order, with the producer's batch API, and delete them.

        The rows are grouped by the partition the default partitioner picks for their key (what
        `producer.send` would pick: murmur2 over the topic's partitions), keeping id order within each
        partition, and appended to one producer batch per partition (more when one fills up): about
        half the client CPU per record of one `send` each (bench/relay_send_bench.py)."""
        rows = await conn.fetch(
            f"SELECT id, topic, key, headers::text AS headers, payload, raw FROM {self.schema}.outbox ORDER BY id LIMIT $1",
            self.batch_size,
        )
        if not rows:
            return 0
        refused: dict[int, str] = {}
        partitions: dict[str, list[int]] = {}
        groups: dict[tuple[str, int], list[tuple[bytes | None, bytes | None, list[tuple[str, bytes | None]]]]] = {}
        for row in rows:
            key, headers = _record_of(row)
            value = bytes(row["payload"]) if row["payload"] is not None else None
            topic = topic_name(Topic(row["topic"]), self.prefix)
            try:  # what `send` checks before it takes a record
                if key is None and value is None:
                    raise ValueError("a record needs a key or a value")
                size = DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, headers)
            except (AssertionError, ValueError, TypeError) as error:  # the client refuses the record as it stands
                refused[row["id"]] = f"refused by the Kafka client: {type(error).__name__}: {str(error)[:200]}"
                continue
            if size > self.max_record_bytes:
                refused[row["id"]] = "record larger than the broker accepts"
                continue
            if topic not in partitions:
                partitions[topic] = sorted(await self.producer.partitions_for(topic))
            partition = self._partitioner(key, partitions[topic], partitions[topic])
            groups.setdefault((topic, partition), []).append((key, value, headers))
        futures: list[asyncio.Future[Any]] = []
        for (topic, partition), records in groups.items():
            batch = self.producer.create_batch()
            for key, value, headers in records:
                if batch.append(key=key, value=value, timestamp=None, headers=headers) is None:  # full
                    futures.append(await self.producer.send_batch(batch, topic, partition=partition))
                    batch = self.producer.create_batch()
                    batch.append(key=key, value=value, timestamp=None, headers=headers)
            futures.append(await self.producer.send_batch(batch, topic, partition=partition))
        await asyncio.gather(*futures)
        delete = f"DELETE FROM {self.schema}.outbox WHERE id = ANY($1::bigint[])"
        if not refused:
            # One statement is its own transaction: no BEGIN and COMMIT round trips, at every round.
            await conn.execute(delete, [r["id"] for r in rows])
        else:
            async with conn.transaction():
                # Kafka will never take these: set them aside, loudly, instead of blocking every row behind them.
                await conn.execute(
                    f"""INSERT INTO {self.schema}.outbox_failed (id, event_id, topic, key, headers, payload, raw, error)
                        SELECT o.id, o.event_id, o.topic, o.key, o.headers, o.payload, o.raw, f.error
                        FROM {self.schema}.outbox o JOIN unnest($1::bigint[], $2::text[]) AS f(id, error) ON f.id = o.id""",
                    list(refused),
                    list(refused.values()),
                )
                log.error("outbox rows Kafka will not take set aside in outbox_failed", schema=self.schema, rows=len(refused))
                await conn.execute(delete, [r["id"] for r in rows])
        self.published_total += len(rows) - len(refused)
        return len(rows)
