"""The limit: a bare aiokafka consume-and-produce relay over four hops, four processes, no database.

    python bench/relay_limit.py --bootstrap 127.0.0.1:29092 --messages 50000 --size 2500

hop0 -> relay 1 -> hop1 -> relay 2 -> hop2 -> relay 3 -> hop3 -> relay 4 -> hop4, each relay a process
with a consumer group. Each relay produces the way a good relay does: linger 5 ms and batches up to
1 MiB, idempotent, acks=all (the services' outbox relays' settings), and it does NOT stop and wait:
it hands a fetched batch to the producer and fetches the next one while the broker acknowledges the
previous ones; offsets are committed, in order, once the records before them are acknowledged.
Records carry the pipeline's CloudEvents headers and the pipeline's mean record size. Topics have 6
partitions, like the pipeline's. Prints (and returns) messages per second through all four hops, and
the CPU each relay process used per message (from /proc/<pid>/stat).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import resource
import secrets
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import cpu  # noqa: E402
from deploy.local.kafka_users import client_options  # noqa: E402
from shared.acl import ADMIN  # noqa: E402

HOPS = 4


def admin_options(bootstrap: str) -> dict[str, Any]:
    """The bare broker's limit, on topics of its own outside the project's ACLs: as the admin."""
    return client_options(ADMIN, bootstrap)


PARTITIONS = 6


@dataclass(frozen=True)
class _Record:
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]


async def send_batches(
    producer: AIOKafkaProducer, topic: str, partition: int, records: Sequence[Any]
) -> list[tuple[asyncio.Future[Any], int]]:
    """Append `records` (key, value, headers) to producer batches of `topic`'s `partition`; the
    acknowledgements with how many records each one covers."""
    sent: list[tuple[asyncio.Future[Any], int]] = []
    batch, count = producer.create_batch(), 0
    for r in records:
        if batch.append(key=r.key, value=r.value, timestamp=None, headers=list(r.headers)) is None:
            sent.append((await producer.send_batch(batch, topic, partition=partition), count))
            batch, count = producer.create_batch(), 0
            batch.append(key=r.key, value=r.value, timestamp=None, headers=list(r.headers))
        count += 1
    if count:
        sent.append((await producer.send_batch(batch, topic, partition=partition), count))
    return sent


async def gather_counts(sent: list[tuple[asyncio.Future[Any], int]]) -> int:
    await asyncio.gather(*(future for future, _ in sent))
    return sum(count for _, count in sent)


async def relay(bootstrap: str, source: str, target: str, group: str, count: int, deadline_s: float) -> None:
    consumer = AIOKafkaConsumer(
        source,
        **admin_options(bootstrap),
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_poll_records=2000,
        fetch_max_bytes=16 << 20,
        max_partition_fetch_bytes=4 << 20,
    )
    producer = AIOKafkaProducer(
        **admin_options(bootstrap), enable_idempotence=True, acks="all", linger_ms=5, max_batch_size=1 << 20
    )
    await consumer.start()
    await producer.start()
    relayed = 0
    deadline = time.monotonic() + deadline_s
    while not consumer.assignment() and time.monotonic() < deadline:  # joined the group
        await consumer.getmany(timeout_ms=100)
    print("READY", flush=True)
    # In flight: (acknowledgement of a fetched batch, the offsets to commit once it is acknowledged).
    inflight: collections.deque[tuple[asyncio.Future[Any], dict[TopicPartition, int]]] = collections.deque()

    async def commit_done(wait: bool) -> int:
        done = 0
        while inflight and (wait or inflight[0][0].done()):
            acked, offsets = inflight.popleft()
            done += await acked
            await consumer.commit(offsets)
        return done

    try:
        while relayed < count and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=50, max_records=2000)
            futures = []
            offsets: dict[TopicPartition, int] = {}
            for tp, records in batch.items():
                # The producer's batch API: one batch per partition (the same partition of the next
                # hop), full batches sent as they fill up, never one future per record.
                futures += await send_batches(producer, target, tp.partition, records)
                offsets[tp] = records[-1].offset + 1
            if futures:
                inflight.append((asyncio.ensure_future(gather_counts(futures)), offsets))
            relayed += await commit_done(wait=len(inflight) > 8)
        relayed += await commit_done(wait=True)
    finally:
        await producer.stop()
        await consumer.stop()
        usage = resource.getrusage(resource.RUSAGE_SELF)
        print(json.dumps({"relayed": relayed, "cpu_s": usage.ru_utime + usage.ru_stime}), flush=True)


def _spawn(source: str, target: str, group: str, bootstrap: str, messages: int, timeout_s: float) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--relay",
            source,
            target,
            group,
            "--bootstrap",
            bootstrap,
            "--messages",
            str(messages),
            "--timeout",
            str(timeout_s),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
    )


async def measure(bootstrap: str, messages: int, size: int, timeout_s: float = 300) -> dict[str, Any]:
    run = secrets.token_hex(4)
    topics = [f"bench-relay-{run}.hop{i}" for i in range(HOPS + 1)]
    admin = AIOKafkaAdminClient(**admin_options(bootstrap))
    await admin.start()
    try:
        await admin.create_topics([NewTopic(t, num_partitions=PARTITIONS, replication_factor=1) for t in topics])
    finally:
        await admin.close()
    relays = [_spawn(topics[i], topics[i + 1], f"bench-relay-{run}-{i}", bootstrap, messages, timeout_s) for i in range(HOPS)]
    for proc in relays:  # every relay joined its group (a fresh broker takes a while for the first)
        assert proc.stdout is not None
        await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), timeout=120)
    sink = AIOKafkaConsumer(
        topics[-1],
        **admin_options(bootstrap),
        group_id=f"bench-relay-{run}-sink",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    producer = AIOKafkaProducer(
        **admin_options(bootstrap), enable_idempotence=True, acks="all", linger_ms=5, max_batch_size=1 << 20
    )
    await sink.start()
    await producer.start()
    try:
        while not sink.assignment():
            await sink.getmany(timeout_ms=100)
        # Headers like the pipeline's CloudEvents ones, and a JSON-ish body of `size` bytes.
        headers = [
            ("ce_specversion", b"1.0"),
            ("ce_id", b"0" * 36),
            ("ce_source", b"/clustergrants/bench"),
            ("ce_type", b"org.clustergrants.bench.v1"),
            ("ce_time", b"2026-01-01T00:00:00+00:00"),
            ("content-type", b"application/json"),
            ("traceparent", b"00-" + b"0" * 32 + b"-" + b"0" * 16 + b"-01"),
        ]
        header_bytes = sum(len(k) + len(v) for k, v in headers)
        body = json.dumps({"pad": "x" * max(0, size - header_bytes - 12)}).encode()
        broker = cpu.listener_pid(cpu.port_of(bootstrap))
        meter = cpu.Meter({"kafka": lambda: [broker] if broker else [], "driver": lambda: [os.getpid()]})
        before = meter.snapshot()
        started = time.monotonic()
        chunk = 6000  # per round: a thousand records per partition, the batch API, keyed spread
        for first in range(0, messages, chunk):
            per_partition: dict[int, list[Any]] = collections.defaultdict(list)
            for i in range(first, min(messages, first + chunk)):
                per_partition[i % PARTITIONS].append(_Record(f"APP-{i}".encode(), body, headers))
            acks = [a for p, rs in per_partition.items() for a in await send_batches(producer, topics[0], p, rs)]
            await gather_counts(acks)
        produced_s = time.monotonic() - started
        received = 0
        deadline = time.monotonic() + timeout_s
        while received < messages and time.monotonic() < deadline:
            batch = await sink.getmany(timeout_ms=200)
            received += sum(len(r) for r in batch.values())
        elapsed = time.monotonic() - started
        used = meter.since(before)
    finally:
        await producer.stop()
        await sink.stop()
        relay_cpu: list[float] = []
        for proc in relays:
            try:
                out, _ = proc.communicate(timeout=30)  # a relay exits once it relayed every message
            except subprocess.TimeoutExpired:
                proc.terminate()
                try:
                    out, _ = proc.communicate(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    out, _ = proc.communicate(timeout=5)
            for line in out.decode(errors="replace").splitlines():
                with contextlib.suppress(ValueError, KeyError):
                    relay_cpu.append(float(json.loads(line)["cpu_s"]))
        admin = AIOKafkaAdminClient(**admin_options(bootstrap))
        await admin.start()
        try:
            with contextlib.suppress(Exception):
                await admin.delete_topics(topics)
        finally:
            await admin.close()
    return {
        "messages": messages,
        "received": received,
        "message_bytes": len(body) + header_bytes,  # value + headers, like the pipeline's mean record
        "hops": HOPS,
        "produce_s": round(produced_s, 2),
        "elapsed_s": round(elapsed, 2),
        "msgs_per_s": round(received / elapsed, 1),
        "producer": "linger_ms=5, max_batch_size=1 MiB, idempotent, acks=all, no stop-and-wait",
        # CPU per message relayed through all four hops (each relay's whole life, start-up included).
        "cpu_ms_per_message": {
            "relays": round(1000 * sum(relay_cpu) / max(1, received), 3),
            "kafka": round(1000 * used.get("kafka", 0.0) / max(1, received), 3),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:29092"))
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--size", type=int, default=2500)
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument("--relay", nargs=3, metavar=("SOURCE", "TARGET", "GROUP"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.relay:
        source, target, group = args.relay
        asyncio.run(relay(args.bootstrap, source, target, group, args.messages, args.timeout))
        return
    print(json.dumps(asyncio.run(measure(args.bootstrap, args.messages, args.size, args.timeout))))


if __name__ == "__main__":
    main()
