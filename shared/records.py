"""Consumed Kafka records, read by the project one by one from raw bytes: key, headers and value.

Nothing here trusts the producer. `read` turns one record into either a `Delivery` (a CloudEvent of
the type the topic carries, from a producer the topic allows, whose data is a valid event) or a
`Rejected` naming why not; it never raises, so one odd record can never take the records beside it
down with it. What the runtime does with a `Rejected` is the topic's contract (intake answers a
submission with an `ApplicationRejected`; everywhere else the record is parked on the dead-letter
topic with the reason).

`ResilientConsumer` goes one step lower: aiokafka decodes header *names* as UTF-8 while it unpacks a
fetch, and a name that is not UTF-8 makes every `getmany` raise for that partition from then on (the
partition is wedged, and FastStream's consume loop dies on the error). The consumer finds the
record, hands it on as an `UnreadableRecord` (to be parked like any unreadable record) and moves on.
It also waits for records instead of returning an empty batch, so FastStream never sleeps a whole
batch timeout after an empty poll.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import ConsumerStoppedError, KafkaError
from pydantic import ValidationError

from shared.cloudevents import Attributes, InvalidEnvelope, read_envelope
from shared.events import Event
from shared.topics import SERVICE_SOURCE_PREFIX, TOPIC_SPECS, Topic, service_source

log = structlog.get_logger("records")

E = TypeVar("E", bound=Event)
# What a contract's parse made of a record: its event, or the bytes themselves (intake reads them itself).
P = TypeVar("P")


@dataclass(frozen=True)
class Position:
    topic: str
    partition: int
    offset: int

    def __str__(self) -> str:
        return f"{self.topic}:{self.partition}:{self.offset}"

    @property
    def identity(self) -> tuple[str, str]:
        """The identity of a record that carries no readable one: its place in the log, under a source
        no producer may use (`/clustergrants/...` is reserved for the services)."""
        return (f"{SERVICE_SOURCE_PREFIX}kafka/{self.topic}", f"{self.partition}:{self.offset}")


def position_of(record: ConsumerRecord[Any, Any]) -> Position:
    return Position(record.topic, record.partition, record.offset)


class InvalidData(Exception):
    """The data is not a valid event: every error found, without input values (they may be personal)."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(f"{len(errors)} error(s)")
        self.errors = errors


def validation_errors(error: ValidationError) -> list[dict[str, Any]]:
    """Pydantic errors without the offending input (it may be personal data)."""
    return [
        {"loc": list(e["loc"]), "type": e["type"], "message": e["msg"]}
        for e in error.errors(include_input=False, include_url=False)
    ]


def model_parser(model: type[E]) -> Callable[[bytes], E]:
    def parse(data: bytes) -> E:
        try:
            return model.model_validate_json(data)
        except ValidationError as error:
            raise InvalidData(validation_errors(error)) from None

    return parse


@dataclass(frozen=True)
class Contract(Generic[E]):
    """What a topic carries (one event type) and who may publish it, as consumers check it."""

    topic: Topic
    model: type[E]
    parse: Callable[[bytes], E]

    @classmethod
    def of(cls, model: type[E], parse: Callable[[bytes], E] | None = None) -> Contract[E]:
        return cls(topic=model.topic, model=model, parse=parse or model_parser(model))

    def source_allowed(self, source: str) -> bool:
        """A service's events come from `/clustergrants/<service>`; a portal may name itself any
        other URI-reference, but never one under the services' reserved prefix."""
        for producer in TOPIC_SPECS[self.topic].producers:
            if producer == "portal":
                if not source.startswith(SERVICE_SOURCE_PREFIX):
                    return True
            elif source == service_source(producer):
                return True
        return False


@dataclass(frozen=True)
class Delivery(Generic[P]):
    """A consumed event the contract accepts: what a handler is given."""

    event: P
    attributes: Attributes
    position: Position
    record: ConsumerRecord[Any, Any] = field(repr=False, compare=False)

    @property
    def identity(self) -> tuple[str, str]:
        return self.attributes.identity

    @property
    def event_id(self) -> str:
        return self.attributes.id

    @property
    def correlation_id(self) -> str:
        return self.attributes.correlationid or self.attributes.id


@dataclass(frozen=True)
class Rejected:
    """A consumed record the contract refuses, and why.

    `unreadable`: the record is not a valid CloudEvent, or its data not a valid event.
    `not_allowed`: a readable event of another type, or from a producer the topic does not allow.
    """

    position: Position
    record: ConsumerRecord[Any, Any] = field(repr=False, compare=False)
    kind: Literal["unreadable", "not_allowed"]
    reason: str
    detail: str
    errors: list[dict[str, Any]]
    attributes: Attributes | None = None

    @property
    def identity(self) -> tuple[str, str]:
        return self.attributes.identity if self.attributes is not None else self.position.identity

    @property
    def correlation_id(self) -> str:
        if self.attributes is not None:
            return self.attributes.correlationid or self.attributes.id
        return str(self.position)

    def describe(self) -> str:
        """Log- and header-safe: codes and locations, never input values."""
        detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['type']}" for e in self.errors[:20])
        return f"{self.reason}: {self.detail}" + (f" ({detail})" if detail else "")


Read = Delivery[E] | Rejected


class UnreadableRecord(ConsumerRecord):
    """A record the Kafka client itself could not decode; only its position is known."""

    error: str = ""


def unreadable_record(tp: TopicPartition, offset: int, error: BaseException) -> UnreadableRecord:
    record = UnreadableRecord(
        topic=tp.topic,
        partition=tp.partition,
        offset=offset,
        timestamp=-1,
        timestamp_type=0,
        key=None,
        value=None,
        checksum=None,
        serialized_key_size=-1,
        serialized_value_size=-1,
        headers=(),
    )
    record.error = f"{type(error).__name__}: {str(error)[:200]}"
    return record


def read(record: ConsumerRecord[Any, Any], contract: Contract[E]) -> Delivery[E] | Rejected:
    """One record as its contract sees it. Never raises."""
    position = position_of(record)

    def rejected(
        kind: Literal["unreadable", "not_allowed"],
        reason: str,
        detail: str,
        errors: list[dict[str, Any]] | None = None,
        attributes: Attributes | None = None,
    ) -> Rejected:
        return Rejected(position, record, kind, reason, detail, errors or [], attributes)

    if isinstance(record, UnreadableRecord):
        return rejected("unreadable", "record_unreadable", f"the Kafka client could not decode the record ({record.error})")
    headers = record.headers or ()
    value = record.value
    if value is not None and not isinstance(value, bytes):  # a deserializer was configured: not ours
        return rejected("unreadable", "value_not_bytes", "the record's value was not handed over as bytes")
    try:
        envelope = read_envelope(headers, value)
    except InvalidEnvelope as error:
        return rejected(
            "unreadable",
            error.reason,
            error.detail,
            [{"loc": error.loc, "type": error.reason, "message": error.detail}],
        )
    attributes = envelope.attributes
    expected = contract.model.cloudevents_type()
    if attributes.type != expected:
        return rejected(
            "not_allowed",
            "type_not_allowed",
            f"events of type {attributes.type[:100]!r} do not belong on this topic (it carries {expected!r})",
            attributes=attributes,
        )
    if not contract.source_allowed(attributes.source):
        return rejected(
            "not_allowed",
            "source_not_allowed",
            f"source {attributes.source[:100]!r} may not publish to this topic",
            attributes=attributes,
        )
    try:
        event = contract.parse(envelope.data)
    except InvalidData as error:
        return rejected(
            "unreadable", "data_invalid", f"the data is not a valid {contract.model.__name__}", error.errors, attributes
        )
    if "portal" not in TOPIC_SPECS[contract.topic].producers and record.key != event.key().encode():
        return rejected(
            "not_allowed",
            "key_mismatch",
            "the record's key is not the event's key (ordering would break)",
            attributes=attributes,
        )
    return Delivery(event=event, attributes=attributes, position=position, record=record)


def split(reads: Sequence[Delivery[E] | Rejected]) -> tuple[list[Delivery[E]], list[Rejected]]:
    deliveries = [r for r in reads if isinstance(r, Delivery)]
    rejected = [r for r in reads if isinstance(r, Rejected)]
    return deliveries, rejected


# --- the consumer ---------------------------------------------------------------------------------


class ResilientConsumer(AIOKafkaConsumer):
    """`getmany` that survives records the client cannot decode, and never returns an empty batch."""

    isolate_limit = 1_000  # records read one by one while looking for the undecodable one

    def __init__(self, *topics: str, linger_ms: int = 0, **options: Any) -> None:
        super().__init__(*topics, **options)
        self.linger_ms = linger_ms

    async def getmany(
        self, *partitions: TopicPartition, timeout_ms: int = 0, max_records: int | None = None
    ) -> dict[TopicPartition, list[ConsumerRecord[Any, Any]]]:
        """Wait for a first record; then, for up to `linger_ms`, read on while the batch is short of
        `max_records`: at a steady rate records come a few at a time, and every batch costs a
        transaction, an offset commit and the producer's round trips whatever its size."""
        batch: dict[TopicPartition, list[ConsumerRecord[Any, Any]]] = {}
        while not batch:
            batch = await self._read(partitions, timeout_ms, max_records)
        if self.linger_ms <= 0:
            return batch
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.linger_ms / 1000
        count = sum(len(records) for records in batch.values())
        while max_records is None or count < max_records:
            left_ms = int((deadline - loop.time()) * 1000)
            if left_ms <= 0:
                break
            try:
                more = await self._read(partitions, left_ms, None if max_records is None else max_records - count)
            except (KafkaError, ConsumerStoppedError):
                # The positions have moved past what was read: hand it on (the next read meets the
                # error again) rather than drop records the group would then never see.
                break
            for tp, records in more.items():  # each partition's records stay in offset order
                batch.setdefault(tp, []).extend(records)
                count += len(records)
        return batch

    async def _read(
        self, partitions: tuple[TopicPartition, ...], timeout_ms: int, max_records: int | None
    ) -> dict[TopicPartition, list[ConsumerRecord[Any, Any]]]:
        before = await self._positions()
        try:
            batch: dict[TopicPartition, list[ConsumerRecord[Any, Any]]] = await super().getmany(
                *partitions, timeout_ms=timeout_ms, max_records=max_records
            )
            return batch
        except (KafkaError, ConsumerStoppedError, asyncio.CancelledError):
            raise
        except Exception as error:  # decoding a record failed inside the client
            # Partitions drained before the failing one have moved on, and their records went down
            # with the exception: put every position back first.
            await self._restore(before)
            return await self._isolate(error)

    async def _positions(self) -> dict[TopicPartition, int]:
        positions: dict[TopicPartition, int] = {}
        for tp in self.assignment():
            with contextlib.suppress(Exception):  # moved away in a rebalance: nothing to restore
                positions[tp] = await self.position(tp)
        return positions

    async def _restore(self, positions: dict[TopicPartition, int]) -> None:
        for tp in self.assignment():
            with contextlib.suppress(Exception):
                if tp in positions:
                    self.seek(tp, positions[tp])
                else:  # assigned during the failed call: back to what the group committed
                    committed = await self.committed(tp)
                    if committed is not None:
                        self.seek(tp, committed)

    async def _isolate(self, error: BaseException) -> dict[TopicPartition, list[ConsumerRecord[Any, Any]]]:
        """Read each partition one record at a time up to the one that fails; hand that one on as an
        `UnreadableRecord` and continue after it."""
        for tp in sorted(self.assignment()):
            good: list[ConsumerRecord[Any, Any]] = []
            for _ in range(self.isolate_limit):
                try:
                    part = await super().getmany(tp, timeout_ms=500, max_records=1)
                except (KafkaError, ConsumerStoppedError, asyncio.CancelledError):
                    raise
                except Exception as failed:
                    offset = await self.position(tp)
                    log.error(
                        "record the Kafka client cannot decode; it is set aside and the partition goes on",
                        topic=tp.topic,
                        partition=tp.partition,
                        offset=offset,
                        error=type(failed).__name__,
                    )
                    self.seek(tp, offset + 1)
                    return {tp: [*good, unreadable_record(tp, offset, failed)]}
                records = part.get(tp, [])
                if not records:
                    break
                good.extend(records)
            if good:
                return {tp: good}
        log.error("the Kafka client failed to decode a fetch, and no partition reproduces it", error=type(error).__name__)
        await asyncio.sleep(1.0)
        return {}
