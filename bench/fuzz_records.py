"""Whole hostile Kafka records on the submitted topic, in one burst with good ones (issue 10).

Not the data this time (bench/fuzz_intake.py fuzzes that), but the record around it: headers that are
not UTF-8, duplicated, missing or wrong `ce_*`, huge; keys that are null or binary; tombstones;
structured mode; a header *name* the Kafka client cannot decode. Each hostile record is followed by a
good application with the same key (same partition, next offset), and all of them go out in one
burst, so they share fetches and batches.

Each hostile record must end up exactly as its contract says, found by its position in the log:
`received` (an application: the oddity is not ours to judge), `rejected` (an ApplicationRejected: the
portal is told why), or `parked` (a dead letter: a producer or type the topic does not allow). Every
good follower must be received, and intake's committed offsets must reach the end of the topic.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench.fuzz_payloads import good, structured_event
from deploy.local.kafka_users import client_options
from shared.acl import ADMIN, producer_of, reader_of
from shared.cloudevents import portal_headers
from shared.events import ApplicationReceived, ApplicationSubmitted
from shared.topics import TOPIC_SPECS, Topic, topic_name
from tests.kafka_tools import publish_with_undecodable_header_name

PORTAL = "urn:clustergrants:record-fuzz-portal"
Expected = Literal["received", "rejected", "parked"]
Headers = list[tuple[str, bytes | None]]


@dataclass(frozen=True)
class Attack:
    name: str
    expected: Expected
    value: bytes | None
    key: bytes | None
    headers: Headers
    application_id: str | None = None  # for `received`: the id it must arrive under


@dataclass
class RecordReport:
    violations: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)


_ids = itertools.count()


def _ce(app_id: str, **replace: bytes | None) -> Headers:
    """A portal's headers with an event id of their own (the same id twice would be one event, a duplicate)."""
    event_id = f"{app_id}-e{next(_ids)}"
    headers: Headers = list(portal_headers(ApplicationSubmitted, source=PORTAL, event_id=event_id, subject=app_id))
    for name, value in replace.items():
        headers = [(n, v) for n, v in headers if n != name]
        if value is not None:
            headers.append((name, value))
    return headers


def attacks(run: str) -> list[Attack]:
    def app(n: str) -> str:
        return f"{run}-R{n}"

    ok = {n: app(n) for n in ("note", "bighdr", "nullkey", "binkey", "structured")}
    received = [
        Attack(
            "non-UTF-8 value of a header that is not ours",
            "received",
            good(ok["note"]),
            ok["note"].encode(),
            [*_ce(ok["note"]), ("x-portal-note", b"\xff\xfe")],
            ok["note"],
        ),
        Attack(
            "a 100 KB header that is not ours",
            "received",
            good(ok["bighdr"]),
            ok["bighdr"].encode(),
            [*_ce(ok["bighdr"]), ("x-trace-blob", b"x" * 100_000)],
            ok["bighdr"],
        ),
        Attack("null key", "received", good(ok["nullkey"]), None, _ce(ok["nullkey"]), ok["nullkey"]),
        Attack("binary key", "received", good(ok["binkey"]), b"\xff\x00\xfe", _ce(ok["binkey"]), ok["binkey"]),
        Attack(
            "structured mode",
            "received",
            structured_event(ok["structured"], source=PORTAL),
            ok["structured"].encode(),
            [("content-type", b"application/cloudevents+json")],
            ok["structured"],
        ),
    ]
    bad = app("bad")
    rejected = [
        Attack("ce_id not UTF-8", "rejected", good(bad), b"k", _ce(bad, ce_id=b"\xff\xfe")),
        Attack("ce_source twice", "rejected", good(bad), b"k", [*_ce(bad), ("ce_source", b"urn:other")]),
        Attack("ce_id twice, differing in case", "rejected", good(bad), b"k", [*_ce(bad), ("CE_ID", b"other")]),
        Attack("no ce_ headers at all", "rejected", good(bad), b"k", []),
        Attack("ce_specversion 0.3", "rejected", good(bad), b"k", _ce(bad, ce_specversion=b"0.3")),
        Attack("ce_time not RFC 3339", "rejected", good(bad), b"k", _ce(bad, ce_time=b"yesterday")),
        Attack("ce_source not a URI-reference", "rejected", good(bad), b"k", _ce(bad, ce_source=b"two words")),
        Attack("ce_subject of 5,000 characters", "rejected", good(bad), b"k", _ce(bad, ce_subject=b"s" * 5000)),
        Attack("ce_id with a line break", "rejected", good(bad), b"k", _ce(bad, ce_id=b"a\r\nb")),
        Attack("tombstone with CloudEvents headers", "rejected", None, b"k", _ce(bad)),
        Attack("tombstone without headers", "rejected", None, b"k", []),
        Attack("content-type text/plain", "rejected", good(bad), b"k", _ce(bad, **{"content-type": b"text/plain"})),
        Attack("content-type twice", "rejected", good(bad), b"k", [*_ce(bad), ("content-type", b"application/json")]),
        Attack(
            "structured mode with a key twice",
            "rejected",
            b'{"specversion":"1.0","id":"a","id":"b","source":"urn:x","type":"t","data":{}}',
            b"k",
            [("content-type", b"application/cloudevents+json")],
        ),
        Attack(
            "structured mode and ce_ headers",
            "rejected",
            structured_event(bad),
            b"k",
            [("content-type", b"application/cloudevents+json"), ("ce_id", b"x")],
        ),
        Attack("not JSON at all", "rejected", b"\x00\x01binary", b"k", _ce(bad)),
    ]
    parked = [
        Attack(
            "another event type", "parked", good(bad), b"k", _ce(bad, ce_type=ApplicationReceived.cloudevents_type().encode())
        ),
        Attack("a portal posing as intake", "parked", good(bad), b"k", _ce(bad, ce_source=b"/clustergrants/intake")),
        Attack("a source under the reserved prefix", "parked", good(bad), b"k", _ce(bad, ce_source=b"/clustergrants/kafka/x")),
    ]
    return received + rejected + parked


async def record_edges(
    bootstrap: str, prefix: str, database_url: str, run: str, timeout_s: float = 120, alive: Callable[[], list[str]] | None = None
) -> RecordReport:
    report = RecordReport()
    started = time.monotonic()
    topic = topic_name(Topic.APPLICATION_SUBMITTED, prefix)
    plan = attacks(run)
    followers: list[str] = []
    positions: dict[str, tuple[int, int]] = {}
    portal = producer_of(Topic.APPLICATION_SUBMITTED)
    producer = AIOKafkaProducer(**client_options(portal, bootstrap), acks="all", linger_ms=20, max_request_size=4 * 1024 * 1024)
    await producer.start()
    try:
        futures = []
        for i, attack in enumerate(plan):
            follower = f"{run}-RG{i}"
            followers.append(follower)
            futures.append((attack.name, await producer.send(topic, attack.value, key=attack.key, headers=attack.headers)))
            key = attack.key if attack.key is not None else follower.encode()
            futures.append((follower, await producer.send(topic, good(follower, i), key=key, headers=_ce(follower))))
        for name, future in futures:
            meta = await future
            positions[name] = (meta.partition, meta.offset)
    finally:
        await producer.stop()
    # A header name the Kafka client cannot decode (a C client can send one), then a good one behind it.
    await publish_with_undecodable_header_name(bootstrap, topic, 0, good(f"{run}-Rhdrname"), b"hdrname")
    follower = f"{run}-RGhdrname"
    followers.append(follower)
    producer = AIOKafkaProducer(**client_options(portal, bootstrap), acks="all")
    await producer.start()
    try:
        meta = await producer.send_and_wait(topic, good(follower), key=b"hdrname", partition=0, headers=_ce(follower))
        positions["undecodable header name"] = (0, meta.offset - 1)
    finally:
        await producer.stop()
    plan.append(Attack("undecodable header name", "rejected", None, b"hdrname", []))

    conn = await asyncpg.connect(database_url)
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            got = await conn.fetchval(
                "SELECT count(*) FROM intake.applications WHERE application_id = ANY($1::text[])", followers
            )
            if got >= len(followers) and await _committed_to_end(bootstrap, topic):
                break
            await asyncio.sleep(0.5)
        applications = {
            r[0]
            for r in await conn.fetch("SELECT application_id FROM intake.applications WHERE application_id LIKE $1", f"{run}-R%")
        }
        rejections = {
            r[0]: r[1]
            for r in await conn.fetch(
                "SELECT source_reference, errors FROM intake.rejections WHERE source_reference LIKE $1", f"{topic}:%"
            )
        }
    finally:
        await conn.close()
    parked = await _parked(bootstrap, prefix, topic, sum(1 for a in plan if a.expected == "parked"), timeout_s=30)

    outcomes: dict[str, str] = {}
    for attack in plan:
        partition, offset = positions[attack.name]
        where = f"{topic}:{partition}:{offset}"
        seen = []
        if attack.application_id is not None and attack.application_id in applications:
            seen.append("received")
        if where in rejections:
            seen.append("rejected")
        if (partition, offset) in parked:
            seen.append("parked")
        outcomes[attack.name] = "+".join(seen) or "nothing"
        if seen != [attack.expected]:
            report.violations.append(f"{attack.name}: expected {attack.expected}, got {outcomes[attack.name]}")
    missing = [f for f in followers if f not in applications]
    if missing:
        report.violations.append(f"{len(missing)} good applications behind hostile records not received: {missing[:5]}")
    if not await _committed_to_end(bootstrap, topic):
        report.violations.append("intake's committed offsets did not reach the end of the submitted topic")
    if alive is not None and (exited := alive()):
        report.violations.append(f"services exited: {exited}")
    report.figures = {
        "attacks": len(plan),
        "outcomes": outcomes,
        "good_followers": {"sent": len(followers), "received": len(followers) - len(missing)},
        "s": round(time.monotonic() - started, 1),
    }
    return report


async def _committed_to_end(bootstrap: str, topic: str) -> bool:
    # The admin: the only principal besides intake itself that may look at intake's group.
    consumer = AIOKafkaConsumer(**client_options(ADMIN, bootstrap), group_id="clustergrants.intake", enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(TOPIC_SPECS[Topic.APPLICATION_SUBMITTED].partitions)]
        ends = await consumer.end_offsets(partitions)
        for tp in partitions:
            if ends[tp] and await consumer.committed(tp) != ends[tp]:
                return False
        return True
    finally:
        await consumer.stop()


async def _parked(bootstrap: str, prefix: str, topic: str, expected: int, timeout_s: float) -> set[tuple[int, int]]:
    """(partition, offset) of every record of `topic` that intake parked: read until `expected` are there
    (the relay publishes them a moment after the batch commits) or `timeout_s` passed."""
    consumer = AIOKafkaConsumer(
        topic_name(Topic.DEAD_LETTER, prefix),
        **client_options(reader_of(Topic.DEAD_LETTER), bootstrap),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    found: set[tuple[int, int]] = set()
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            if not batch and len(found) >= expected:
                break
            for records in batch.values():
                for record in records:
                    h = {k: v for k, v in record.headers}
                    if h.get("cg_dlt_topic") == topic.encode() and h.get("cg_dlt_group") == b"clustergrants.intake":
                        found.add((int(h["cg_dlt_partition"]), int(h["cg_dlt_offset"])))
    finally:
        await consumer.stop()
    return found


def summary(report: RecordReport) -> str:
    return json.dumps(report.figures, indent=2)
