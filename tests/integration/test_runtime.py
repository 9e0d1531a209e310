"""The service runtime on the real Kafka and PostgreSQL: odd records beside good ones in one batch,
identities of two producers, failing handlers, the infrastructure going away, and errors outside any
handler. Every record ends up processed once or parked once, and no offset moves past one that was not."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.partitioner import DefaultPartitioner

from deploy.local.kafka_users import client_options, principal_settings
from shared import runtime as runtime_module
from shared.acl import ADMIN
from shared.cloudevents import attributes_for, to_headers
from shared.delivery import OutboxRelay, PoisonMessage, UnitOfWork, enqueue
from shared.events import AssessmentSubmitted, CeilingReset, EligibilityDecided, Event
from shared.migrate import SHARED_MIGRATIONS
from shared.records import Delivery
from shared.runtime import ServiceRuntime
from shared.settings import CommonSettings
from shared.topics import TOPIC_SPECS, Topic, topic_name
from tests.conftest import fresh_topics
from tests.kafka_tools import Collector, headers_of, publish_with_undecodable_header_name
from tests.processes import free_port

pytestmark = pytest.mark.integration

BUDGET = "/clustergrants/budget"


def reset(programme: str, year: int = 2020) -> CeilingReset:
    return CeilingReset(
        reset_id=f"{programme}/{year}", programme=programme, budget_year=year, opened_at=datetime(year, 1, 1, tzinfo=UTC)
    )


def assessment(application_id: str) -> AssessmentSubmitted:
    return AssessmentSubmitted(
        application_id=application_id,
        assessment_id=f"S-{application_id}",
        call_id="call-1",
        assessor_id="assessor-1",
        scores={"fit": 3},
        submitted_at=datetime(2020, 1, 1, tzinfo=UTC),
    )


def ce_headers(event: Event, source: str = BUDGET, event_id: str | None = None) -> list[tuple[str, bytes]]:
    return list(to_headers(attributes_for(event, source=source, event_id=event_id or secrets.token_hex(8))))


@dataclass
class Harness:
    bootstrap: str
    database_url: str
    pool: asyncpg.Pool
    schema: str
    prefix: str
    seen: list[Any] = field(default_factory=list)
    runtimes: list[ServiceRuntime[Any]] = field(default_factory=list)

    def topic(self, topic: Topic) -> str:
        return topic_name(topic, self.prefix)

    async def start(
        self,
        model: type[Event],
        handler: Callable[[UnitOfWork[Any], list[Delivery[Any]]], Awaitable[None]],
        *also: tuple[type[Event], Callable[[UnitOfWork[Any], list[Delivery[Any]]], Awaitable[None]]],
        **settings: Any,
    ) -> ServiceRuntime[Any]:
        # As the admin: the runtime under test has a consumer group of its own, which no service
        # principal may join, and the records it must refuse come from producers the ACLs would stop
        # first (the broker's own defence is tested in tests/integration/security).
        options = {
            **principal_settings(ADMIN, self.bootstrap).model_dump(),
            "kafka_bootstrap_servers": self.bootstrap,
            "database_url": self.database_url,
            "topic_prefix": self.prefix,
            "ops_http_port": free_port(),
            "handler_max_attempts": 3,
            "handler_retry_backoff_s": 0.01,
            "consumer_batch_max": 100,
            **settings,
        }
        runtime: ServiceRuntime[Any] = ServiceRuntime(f"t{secrets.token_hex(3)}", CommonSettings(**options), schema=self.schema)
        for each_model, each_handler in ((model, handler), *also):
            runtime.on(each_model, each_handler)
        await runtime.start()
        self.runtimes.append(runtime)
        return runtime

    async def send(
        self, records: Sequence[tuple[bytes | None, bytes | None, Sequence[tuple[str, bytes | None]]]], topic: Topic
    ) -> None:
        """Publish records in one burst (they arrive in one fetch): value, key, headers each."""
        producer = AIOKafkaProducer(**client_options(ADMIN, self.bootstrap), acks="all", linger_ms=50)
        await producer.start()
        try:
            futures = [await producer.send(self.topic(topic), value=v, key=k, headers=h) for v, k, h in records]
            await asyncio.gather(*futures)
        finally:
            await producer.stop()

    async def committed_to_end(self, runtime: ServiceRuntime[Any], topic: Topic) -> bool:
        """Has the runtime's group committed every partition of `topic` up to its end?"""
        consumer = AIOKafkaConsumer(**client_options(ADMIN, self.bootstrap), group_id=runtime.group, enable_auto_commit=False)
        await consumer.start()
        try:
            partitions = [TopicPartition(self.topic(topic), p) for p in range(TOPIC_SPECS[topic].partitions)]
            ends = await consumer.end_offsets(partitions)
            for tp in partitions:
                committed = await consumer.committed(tp)
                if ends[tp] > 0 and committed != ends[tp]:
                    return False
            return True
        finally:
            await consumer.stop()


@pytest.fixture
async def harness(pool: asyncpg.Pool, kafka_bootstrap: str, database_url: str) -> AsyncIterator[Harness]:
    token = secrets.token_hex(3)
    schema = f"rt_{token}"
    for path in sorted(SHARED_MIGRATIONS.glob("[0-9][0-9][0-9]_*.sql")):
        await pool.execute(path.read_text().replace("{schema}", schema))
    prefix = f"rt-{token}."
    await fresh_topics(kafka_bootstrap, prefix)
    h = Harness(kafka_bootstrap, database_url, pool, schema, prefix)
    yield h
    for runtime in h.runtimes:
        await runtime.stop()


async def until(check: Callable[[], Awaitable[object] | object], what: str, timeout: float = 60) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        result = check()
        if await result if asyncio.iscoroutine(result) else result:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def recorder(seen: list[Any], fail: Callable[[Any], None] | None = None) -> Callable[..., Awaitable[None]]:
    async def handle(uow: UnitOfWork[Any], deliveries: list[Delivery[Any]]) -> None:
        for delivery in deliveries:
            if fail is not None:
                fail(delivery.event)
        seen.extend(d.event for d in deliveries)

    return handle


async def test_odd_records_in_a_batch_are_parked_with_their_reason_and_the_good_ones_get_through(harness: Harness) -> None:
    good = [reset(f"good-{i}") for i in range(20)]
    structured = reset("good-structured")
    envelope = {
        "specversion": "1.0",
        "id": "s-1",
        "source": BUDGET,
        "type": CeilingReset.cloudevents_type(),
        "data": structured.model_dump(mode="json"),
    }
    bad_body = reset("bad-body")
    odd: dict[str, tuple[bytes | None, bytes | None, Sequence[tuple[str, bytes | None]]]] = {
        "header_not_utf8": (
            bad_body.model_dump_json().encode(),
            b"bad-body",
            [(n, v) for n, v in ce_headers(bad_body) if n != "ce_id"] + [("ce_id", b"\xff\xfe")],
        ),
        "header_duplicated": (b"{}", b"x", [*ce_headers(bad_body), ("ce_source", BUDGET.encode())]),
        "attribute_missing": (bad_body.model_dump_json().encode(), b"bad-body", []),
        "value_missing": (None, b"bad-body", ce_headers(bad_body)),
        "source_not_allowed": (bad_body.model_dump_json().encode(), b"bad-body", ce_headers(bad_body, source="/attacker")),
        "type_not_allowed": (
            bad_body.model_dump_json().encode(),
            b"bad-body",
            [(n, v) for n, v in ce_headers(bad_body) if n != "ce_type"]
            + [("ce_type", EligibilityDecided.cloudevents_type().encode())],
        ),
        "data_invalid": (b'{"programme": 7}', b"bad-body", ce_headers(bad_body)),
        "key_mismatch": (bad_body.model_dump_json().encode(), b"other-key", ce_headers(bad_body)),
    }
    records: list[tuple[bytes | None, bytes | None, Sequence[tuple[str, bytes | None]]]] = [
        (e.model_dump_json().encode(), e.programme.encode(), [*ce_headers(e), ("x-portal-note", b"\xff\xfe")]) for e in good[:10]
    ]
    records += list(odd.values())
    records += [(json.dumps(envelope).encode(), b"good-structured", [("content-type", b"application/cloudevents+json")])]
    records += [(e.model_dump_json().encode(), e.programme.encode(), ce_headers(e)) for e in good[10:]]

    async with Collector(harness.bootstrap, harness.prefix, [Topic.DEAD_LETTER]) as dlt:
        await harness.send(records[:15], Topic.CEILING_RESET)
        await publish_with_undecodable_header_name(
            harness.bootstrap, harness.topic(Topic.CEILING_RESET), 0, b"{}", b"x", principal=ADMIN
        )
        await harness.send(records[15:], Topic.CEILING_RESET)
        runtime = await harness.start(CeilingReset, recorder(harness.seen))
        await until(lambda: len(harness.seen) >= 21, "the 21 good events")
        await until(lambda: len(dlt.records[Topic.DEAD_LETTER]) >= len(odd) + 1, "a dead letter for every odd record")
        await until(lambda: harness.committed_to_end(runtime, Topic.CEILING_RESET), "offsets committed to the end")
        await asyncio.sleep(0.5)  # time for anything twice to show up

    assert sorted(e.programme for e in harness.seen) == sorted([e.programme for e in good] + ["good-structured"])
    parked = {headers_of_raw(r)["cg_dlt_error_type"]: r for r in dlt.records[Topic.DEAD_LETTER]}
    assert set(parked) == {f"Rejected:{reason}" for reason in odd} | {"Rejected:record_unreadable"}
    assert len(dlt.records[Topic.DEAD_LETTER]) == len(odd) + 1  # each parked once
    not_utf8 = parked["Rejected:header_not_utf8"]
    assert (b"ce_id", b"\xff\xfe") in [(n.encode(), v) for n, v in not_utf8.headers]  # the copy is byte for byte
    assert not_utf8.key == b"bad-body"
    assert headers_of_raw(parked["Rejected:source_not_allowed"])["cg_dlt_error"].startswith("source_not_allowed")
    assert await harness.pool.fetchval(f"SELECT count(*) FROM {harness.schema}.parked") == len(odd) + 1
    assert runtime.metrics.rejected.labels(Topic.CEILING_RESET.value, "not_allowed", "source_not_allowed")._value.get() == 1


def headers_of_raw(record: Any) -> dict[str, str]:
    return {k: v.decode(errors="replace") if v is not None else "" for k, v in record.headers}


async def test_one_consumer_reads_all_the_service_s_topics_and_what_came_at_once_is_one_transaction(harness: Harness) -> None:
    transactions: dict[str, set[int]] = {"resets": set(), "assessments": set()}

    def fails(event: Any) -> None:
        if getattr(event, "programme", None) == "always-fails":
            raise ValueError("cannot handle this")

    def noting(kind: str) -> Callable[[UnitOfWork[Any], list[Delivery[Any]]], Awaitable[None]]:
        record = recorder(harness.seen, fails)

        async def handle(uow: UnitOfWork[Any], deliveries: list[Delivery[Any]]) -> None:
            transactions[kind].add(await uow.conn.fetchval("SELECT txid_current()"))
            await record(uow, deliveries)

        return handle

    # Beside the good records: one whose handler fails, and one from a producer the topic does not
    # allow, each on its own topic.
    resets = [reset(f"both-{i}") for i in range(5)]
    failing = reset("always-fails")
    assessments = [assessment(f"BOTH-{i}") for i in range(5)]
    forged = assessment("FORGED-1")
    await harness.send(
        [(e.model_dump_json().encode(), e.programme.encode(), ce_headers(e)) for e in [*resets[:2], failing, *resets[2:]]],
        Topic.CEILING_RESET,
    )
    await harness.send(
        [(e.model_dump_json().encode(), e.application_id.encode(), ce_headers(e, source="portal-a")) for e in assessments]
        + [(forged.model_dump_json().encode(), b"FORGED-1", ce_headers(forged, source=BUDGET))],  # not its producer
        Topic.ASSESSMENT_SUBMITTED,
    )
    async with Collector(harness.bootstrap, harness.prefix, [Topic.DEAD_LETTER]) as dlt:
        runtime = await harness.start(CeilingReset, noting("resets"), (AssessmentSubmitted, noting("assessments")))
        assert runtime.consumer is not None
        assert runtime.consumer.subscription() == {harness.topic(Topic.CEILING_RESET), harness.topic(Topic.ASSESSMENT_SUBMITTED)}
        await until(lambda: len(harness.seen) >= 10, "the events of both topics")
        await until(lambda: len(dlt.records[Topic.DEAD_LETTER]) >= 2, "the two dead letters")
        await until(lambda: harness.committed_to_end(runtime, Topic.CEILING_RESET), "offsets of the resets committed")
        await until(lambda: harness.committed_to_end(runtime, Topic.ASSESSMENT_SUBMITTED), "offsets of the assessments committed")
    assert sorted(getattr(e, "programme", None) or e.application_id for e in harness.seen) == sorted(
        [e.programme for e in resets] + [e.application_id for e in assessments]
    )
    parked = sorted(headers_of_raw(r)["cg_dlt_error_type"] for r in dlt.records[Topic.DEAD_LETTER])
    assert parked == ["Rejected:source_not_allowed", "ValueError"]
    # Both topics' records were there before the consumer started: its first fetch brought them
    # together, and they were handled in one transaction.
    assert transactions["resets"] & transactions["assessments"]
    with pytest.raises(RuntimeError, match="before start"):
        runtime.on(EligibilityDecided, recorder(harness.seen))


async def test_with_a_linger_records_that_come_one_by_one_are_one_batch(harness: Harness) -> None:
    transactions: list[int] = []
    record = recorder(harness.seen)

    async def handle(uow: UnitOfWork[Any], deliveries: list[Delivery[Any]]) -> None:
        transactions.append(await uow.conn.fetchval("SELECT txid_current()"))
        await record(uow, deliveries)

    runtime = await harness.start(CeilingReset, handle, consumer_linger_ms=1_000)
    await until(lambda: runtime.consumer is not None and runtime.consumer.assignment(), "partitions assigned")
    events = [reset(f"linger-{i}") for i in range(5)]
    producer = AIOKafkaProducer(**client_options(ADMIN, harness.bootstrap), acks="all")
    await producer.start()
    try:
        for event in events:  # one at a time, 50 ms apart: each its own fetch
            await producer.send_and_wait(
                harness.topic(Topic.CEILING_RESET),
                value=event.model_dump_json().encode(),
                key=event.programme.encode(),
                headers=ce_headers(event),
            )
            await asyncio.sleep(0.05)
    finally:
        await producer.stop()
    await until(lambda: len(harness.seen) >= 5, "the five events")
    # Without the linger each record is a batch of its own (five transactions); the first read may
    # return before the rest are sent, the linger gathers what follows within the second.
    assert len(set(transactions)) <= 2, transactions
    assert sorted(e.programme for e in harness.seen) == sorted(e.programme for e in events)


async def test_a_record_the_client_cannot_decode_while_lingering_is_parked_and_both_topics_go_on(harness: Harness) -> None:
    runtime = await harness.start(
        CeilingReset, recorder(harness.seen), (AssessmentSubmitted, recorder(harness.seen)), consumer_linger_ms=1_000
    )
    await until(lambda: runtime.consumer is not None and runtime.consumer.assignment(), "partitions assigned")
    first, last = reset("before-the-odd-one"), assessment("AFTER-1")
    async with Collector(harness.bootstrap, harness.prefix, [Topic.DEAD_LETTER]) as dlt:
        await harness.send([(first.model_dump_json().encode(), first.programme.encode(), ce_headers(first))], Topic.CEILING_RESET)
        # Within the linger of the first record's read, on the other topic: a header name that is
        # not UTF-8 (aiokafka fails the whole fetch on it), then a good record behind it.
        await publish_with_undecodable_header_name(
            harness.bootstrap, harness.topic(Topic.ASSESSMENT_SUBMITTED), 0, b"{}", b"AFTER-1", principal=ADMIN
        )
        await harness.send(
            [(last.model_dump_json().encode(), b"AFTER-1", ce_headers(last, source="portal-a"))], Topic.ASSESSMENT_SUBMITTED
        )
        await until(lambda: len(harness.seen) >= 2, "both good events")
        await until(lambda: len(dlt.records[Topic.DEAD_LETTER]) >= 1, "the dead letter")
        await until(lambda: harness.committed_to_end(runtime, Topic.ASSESSMENT_SUBMITTED), "offsets committed")
        await asyncio.sleep(0.5)  # time for anything twice to show up
    assert [getattr(e, "programme", None) or e.application_id for e in harness.seen] == ["before-the-odd-one", "AFTER-1"]
    assert [headers_of_raw(r)["cg_dlt_error_type"] for r in dlt.records[Topic.DEAD_LETTER]] == ["Rejected:record_unreadable"]


async def test_an_event_is_identified_by_its_source_and_id(harness: Harness) -> None:
    runtime = await harness.start(AssessmentSubmitted, recorder(harness.seen))
    await harness.pool.execute(
        f"INSERT INTO {harness.schema}.inbox (consumer, source, event_id) VALUES ($1, '', 'legacy-7')", runtime.group
    )
    a, b, c, legacy = assessment("A-1"), assessment("B-1"), assessment("C-1"), assessment("L-1")
    await harness.send(
        [
            (a.model_dump_json().encode(), b"A-1", ce_headers(a, source="portal-a", event_id="42")),
            (b.model_dump_json().encode(), b"B-1", ce_headers(b, source="portal-b", event_id="42")),
            (c.model_dump_json().encode(), b"B-1", ce_headers(c, source="portal-b", event_id="42")),  # 42 again, after
            (legacy.model_dump_json().encode(), b"L-1", ce_headers(legacy, source="portal-a", event_id="legacy-7")),
        ],
        Topic.ASSESSMENT_SUBMITTED,
    )
    await until(lambda: harness.committed_to_end(runtime, Topic.ASSESSMENT_SUBMITTED), "offsets committed")
    assert sorted(e.application_id for e in harness.seen) == ["A-1", "B-1"]


async def test_a_failing_record_is_retried_alone_and_parked_while_the_rest_of_its_batch_is_processed(harness: Harness) -> None:
    attempts: dict[str, int] = {}

    def fail(event: CeilingReset) -> None:
        attempts[event.programme] = attempts.get(event.programme, 0) + 1
        if event.programme == "always-fails":
            raise ValueError("cannot handle this")
        if event.programme == "poison":
            raise PoisonMessage("contradicts the ledger")
        if event.programme == "flaky" and attempts["flaky"] < 3:  # fails in the batch and once alone
            raise RuntimeError("transient bug")

    events = [reset(p) for p in ("ok-1", "always-fails", "ok-2", "poison", "flaky", "ok-3")]
    async with Collector(harness.bootstrap, harness.prefix, [Topic.DEAD_LETTER]) as dlt:
        await harness.send(
            [(e.model_dump_json().encode(), e.programme.encode(), ce_headers(e)) for e in events], Topic.CEILING_RESET
        )
        runtime = await harness.start(CeilingReset, recorder(harness.seen, fail))
        await until(lambda: len(dlt.records[Topic.DEAD_LETTER]) >= 2, "two dead letters")
        await until(lambda: harness.committed_to_end(runtime, Topic.CEILING_RESET), "offsets committed")

    assert sorted(e.programme for e in harness.seen) == ["flaky", "ok-1", "ok-2", "ok-3"]
    parked = {json.loads(r.value)["programme"]: headers_of(r) for r in dlt.records[Topic.DEAD_LETTER]}
    assert parked["always-fails"]["cg_dlt_attempts"] == "3" and parked["always-fails"]["cg_dlt_error_type"] == "ValueError"
    assert parked["always-fails"]["cg_dlt_error"] == "ValueError: cannot handle this"
    assert parked["poison"]["cg_dlt_attempts"] == "1" and parked["poison"]["cg_dlt_error_type"] == "PoisonMessage"
    assert parked["poison"]["cg_dlt_topic"] == harness.topic(Topic.CEILING_RESET)
    # The batch stopped at its first failing record (rolled back), then each record ran alone.
    assert attempts["always-fails"] == 1 + 3 and attempts["poison"] == 1 and attempts["ok-1"] == 2


ROLES = {2020: "first", 2021: "by-statement", 2022: "flaky", 2023: "last"}


async def test_retried_alone_the_batch_s_events_keep_the_order_they_were_published_in(harness: Harness) -> None:
    """Also for events a statement writes to the outbox itself (`UnitOfWork.publish_by_statement`): what
    the records before it published is written first, in the batch and when each record runs alone."""
    failed = {"flaky": 0}

    async def answer(uow: UnitOfWork[Any], deliveries: list[Delivery[CeilingReset]]) -> None:
        for delivery in deliveries:
            name = ROLES[delivery.event.budget_year]
            event = assessment("A-1").model_copy(update={"assessment_id": f"S-{name}"})
            if name == "by-statement":

                async def write(_headers: Any, event: AssessmentSubmitted = event) -> int:
                    await enqueue(uow.conn, uow.schema, event, attributes_for(event, source=uow.source))
                    return 1

                await uow.publish_by_statement(AssessmentSubmitted, write)
            else:
                await uow.publish(event, cause=delivery)
            if name == "flaky" and failed["flaky"] < 1:  # fails the batch: each record then runs alone
                failed["flaky"] += 1
                raise RuntimeError("transient bug")

    events = [reset("one-programme", year) for year in ROLES]  # one key: one partition, read in this order
    async with Collector(harness.bootstrap, harness.prefix, [Topic.ASSESSMENT_SUBMITTED]) as seen:
        await harness.send([(e.model_dump_json().encode(), e.key().encode(), ce_headers(e)) for e in events], Topic.CEILING_RESET)
        runtime = await harness.start(CeilingReset, answer)
        await until(lambda: len(seen.records[Topic.ASSESSMENT_SUBMITTED]) >= 4, "four assessments")
        await until(lambda: harness.committed_to_end(runtime, Topic.CEILING_RESET), "offsets committed")
    assert failed["flaky"] == 1
    published = [json.loads(r.value)["assessment_id"] for r in seen.records[Topic.ASSESSMENT_SUBMITTED]]
    assert published == ["S-first", "S-by-statement", "S-flaky", "S-last"]  # one key: one partition, in order


async def test_while_the_infrastructure_is_away_nothing_is_parked_or_skipped(harness: Harness) -> None:
    failures = {"left": 2}

    def fail(event: CeilingReset) -> None:
        if failures["left"]:
            failures["left"] -= 1
            raise ConnectionRefusedError("PostgreSQL is restarting")

    events = [reset(f"p-{i}") for i in range(5)]
    await harness.send([(e.model_dump_json().encode(), e.programme.encode(), ce_headers(e)) for e in events], Topic.CEILING_RESET)
    runtime = await harness.start(CeilingReset, recorder(harness.seen, fail))
    await until(lambda: len(harness.seen) >= 5, "every event")
    await until(lambda: harness.committed_to_end(runtime, Topic.CEILING_RESET), "offsets committed")
    assert sorted(e.programme for e in harness.seen) == sorted(e.programme for e in events)  # each once
    assert await harness.pool.fetchval(f"SELECT count(*) FROM {harness.schema}.parked") == 0
    assert runtime.metrics.redelivered.labels(Topic.CEILING_RESET.value, "infrastructure")._value.get() == 2


async def test_an_error_outside_any_handler_rewinds_the_batch(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    original = runtime_module.read  # type: ignore[attr-defined]  # the name the runtime imported, patched below
    calls = {"n": 0}

    def flaky_read(record: Any, contract: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("a bug in the framework")
        return original(record, contract)

    monkeypatch.setattr(runtime_module, "read", flaky_read)
    events = [reset(f"q-{i}") for i in range(5)]
    await harness.send([(e.model_dump_json().encode(), e.programme.encode(), ce_headers(e)) for e in events], Topic.CEILING_RESET)
    runtime = await harness.start(CeilingReset, recorder(harness.seen))
    await until(lambda: len(harness.seen) >= 5, "every event")
    await until(lambda: harness.committed_to_end(runtime, Topic.CEILING_RESET), "offsets committed")
    assert sorted(e.programme for e in harness.seen) == sorted(e.programme for e in events)
    assert runtime.metrics.redelivered.labels(Topic.CEILING_RESET.value, "framework")._value.get() == 1


async def test_events_a_handler_publishes_carry_the_cause_s_correlation_and_trace(harness: Harness) -> None:
    async def answer(uow: UnitOfWork[Any], deliveries: list[Delivery[CeilingReset]]) -> None:
        for delivery in deliveries:
            await uow.publish(assessment(delivery.event.programme), cause=delivery)

    trace = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    event = reset("traced")
    headers = [*ce_headers(event, event_id="cause-1"), ("traceparent", trace.encode())]
    async with Collector(harness.bootstrap, harness.prefix, [Topic.ASSESSMENT_SUBMITTED]) as seen:
        runtime = await harness.start(CeilingReset, answer)
        await harness.send([(event.model_dump_json().encode(), b"traced", headers)], Topic.CEILING_RESET)
        await until(lambda: bool(seen.records[Topic.ASSESSMENT_SUBMITTED]), "the published event")
    published = headers_of(seen.records[Topic.ASSESSMENT_SUBMITTED][0])
    assert published["ce_source"] == runtime.source and published["ce_causationid"] == "cause-1"
    assert published["ce_correlationid"] == "cause-1"
    assert published["traceparent"].split("-")[1] == "0af7651916cd43dd8448eb211c80319c"


async def test_relay_publishes_in_order_once_even_with_two_relays(harness: Harness) -> None:
    programme = f"relay-{secrets.token_hex(3)}"
    events = [reset(programme, 2000 + i) for i in range(60)]
    async with harness.pool.acquire() as conn, conn.transaction():
        for event in events:
            await enqueue(conn, harness.schema, event, attributes_for(event, source=BUDGET))
    producer = AIOKafkaProducer(**client_options(ADMIN, harness.bootstrap), enable_idempotence=True, acks="all")
    await producer.start()
    relays = [
        OutboxRelay(harness.pool, producer, harness.schema, prefix=harness.prefix, batch_size=7, poll_interval_s=0.05)
        for _ in range(2)
    ]
    try:
        async with Collector(harness.bootstrap, harness.prefix, [Topic.CEILING_RESET]) as seen:
            for relay in relays:
                relay.start()
            await seen.wait_for(lambda: len(seen.bodies(Topic.CEILING_RESET, programme=programme)) >= 60, what="60 events")
            await asyncio.sleep(0.5)  # time for any duplicate to show up
    finally:
        for relay in relays:
            await relay.stop()
        await producer.stop()
    years = [b["budget_year"] for b in seen.bodies(Topic.CEILING_RESET, programme=programme)]
    assert years == list(range(2000, 2060))  # in order, none twice
    assert await harness.pool.fetchval(f"SELECT count(*) FROM {harness.schema}.outbox") == 0
    assert sum(r.published_total for r in relays) == 60


async def test_relay_batches_keep_the_partition_send_would_choose_and_the_order_per_key(harness: Harness) -> None:
    """The batch API: each record on the partition the default partitioner gives its key (as `send`),
    in id order per key, also when a partition's rows fill several producer batches."""
    run = secrets.token_hex(3)
    events = [reset(f"part-{run}-{i % 12}", 2000 + i // 12) for i in range(120)]
    async with harness.pool.acquire() as conn, conn.transaction():
        for event in events:
            await enqueue(conn, harness.schema, event, attributes_for(event, source=BUDGET))
    # Small producer batches (2 KiB): each partition's rows of the round need several.
    producer = AIOKafkaProducer(
        **client_options(ADMIN, harness.bootstrap), enable_idempotence=True, acks="all", max_batch_size=2048
    )
    await producer.start()
    relay = OutboxRelay(harness.pool, producer, harness.schema, prefix=harness.prefix, batch_size=1000, poll_interval_s=0.05)
    try:
        async with Collector(harness.bootstrap, harness.prefix, [Topic.CEILING_RESET]) as seen:
            relay.start()
            await seen.wait_for(
                lambda: sum(1 for b in seen.bodies(Topic.CEILING_RESET) if b["programme"].startswith(f"part-{run}-")) >= 120,
                what="120 events",
            )
    finally:
        await relay.stop()
        await producer.stop()
    partitions = list(range(TOPIC_SPECS[Topic.CEILING_RESET].partitions))
    mine = [r for r in seen.records[Topic.CEILING_RESET] if json.loads(r.value)["programme"].startswith(f"part-{run}-")]
    assert len(mine) == 120
    for record in mine:
        assert record.partition == DefaultPartitioner()(record.key, partitions, partitions)
    for i in range(12):
        years = [json.loads(r.value)["budget_year"] for r in mine if json.loads(r.value)["programme"] == f"part-{run}-{i}"]
        assert years == list(range(2000, 2010))


async def test_an_outbox_row_kafka_will_never_take_is_set_aside_not_blocking_the_rest(harness: Harness) -> None:
    huge, after = reset("huge"), reset("after-huge")
    async with harness.pool.acquire() as conn, conn.transaction():
        await enqueue(conn, harness.schema, huge, attributes_for(huge, source=BUDGET))
        await conn.execute(f"UPDATE {harness.schema}.outbox SET payload = $1", b"x" * 2_000_000)
        await enqueue(conn, harness.schema, after, attributes_for(after, source=BUDGET))
    producer = AIOKafkaProducer(**client_options(ADMIN, harness.bootstrap), enable_idempotence=True, acks="all")
    await producer.start()
    relay = OutboxRelay(harness.pool, producer, harness.schema, prefix=harness.prefix, poll_interval_s=0.05)
    try:
        async with Collector(harness.bootstrap, harness.prefix, [Topic.CEILING_RESET]) as seen:
            relay.start()
            await seen.wait_for(lambda: bool(seen.bodies(Topic.CEILING_RESET, programme="after-huge")), what="the next row")
    finally:
        await relay.stop()
        await producer.stop()
    assert await harness.pool.fetchval(f"SELECT count(*) FROM {harness.schema}.outbox") == 0
    failed = await harness.pool.fetchrow(f"SELECT topic, error FROM {harness.schema}.outbox_failed")
    assert failed is not None
    assert failed["topic"] == Topic.CEILING_RESET.value and "larger" in failed["error"]


async def test_a_redriven_record_is_processed_once_by_the_service_that_parked_it(harness: Harness) -> None:
    broken = {"yes": True}

    def fail(event: CeilingReset) -> None:
        if event.programme == "needs-a-fix" and broken["yes"]:
            raise ValueError("a bug, fixed later")

    event = reset("needs-a-fix")
    async with Collector(harness.bootstrap, harness.prefix, [Topic.DEAD_LETTER]) as dlt:
        runtime = await harness.start(CeilingReset, recorder(harness.seen, fail))
        await harness.send([(event.model_dump_json().encode(), b"needs-a-fix", ce_headers(event))], Topic.CEILING_RESET)
        await until(lambda: bool(dlt.records[Topic.DEAD_LETTER]), "the parked record")
    parked = dlt.records[Topic.DEAD_LETTER][0]
    broken["yes"] = False  # the fix is deployed

    async def redrive() -> str:
        await harness.pool.execute(
            f"""INSERT INTO {harness.schema}.redrive_requests (dlt_partition, dlt_offset, requested_by) VALUES ($1, $2, 'op')
                ON CONFLICT (dlt_partition, dlt_offset) DO UPDATE SET done_at = NULL, outcome = NULL""",
            parked.partition,
            parked.offset,
        )

        async def outcome() -> str | None:
            return await harness.pool.fetchval(
                f"SELECT outcome FROM {harness.schema}.redrive_requests WHERE dlt_offset = $1 AND done_at IS NOT NULL",
                parked.offset,
            )

        await until(lambda: outcome(), "the redrive's outcome")
        return str(await outcome())

    assert await redrive() == "processed"
    assert [e.programme for e in harness.seen] == ["needs-a-fix"]
    assert (await redrive()).startswith("refused: not parked now")  # twice is still once
    assert [e.programme for e in harness.seen] == ["needs-a-fix"]
    assert runtime.metrics.dead_lettered.labels(Topic.CEILING_RESET.value)._value.get() == 1
