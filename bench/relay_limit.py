"""The limit: a bare aiokafka consume-and-produce relay over four hops, four processes, no database.

    python bench/relay_limit.py --bootstrap 127.0.0.1:29092 --messages 50000 --size 2500

hop0 -> relay 1 -> hop1 -> relay 2 -> hop2 -> relay 3 -> hop3 -> relay 4 -> hop4, each relay a process
with a consumer group that commits its offsets after each produced batch is acknowledged, and the same
producer settings as the services' outbox relays (idempotent, acks=all). Topics have 6 partitions,
like the pipeline's. Prints (and returns) messages per second through all four hops.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from deploy.local.kafka_users import client_options  # noqa: E402
from shared.acl import ADMIN  # noqa: E402

HOPS = 4


def admin_options(bootstrap: str) -> dict[str, Any]:
    """The bare broker's limit, on topics of its own outside the project's ACLs: as the admin."""
    return client_options(ADMIN, bootstrap)


PARTITIONS = 6


async def relay(bootstrap: str, source: str, target: str, group: str, count: int, deadline_s: float) -> None:
    consumer = AIOKafkaConsumer(
        source,
        **admin_options(bootstrap),
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_poll_records=500,
    )
    producer = AIOKafkaProducer(**admin_options(bootstrap), enable_idempotence=True, acks="all", linger_ms=2)
    await consumer.start()
    await producer.start()
    relayed = 0
    deadline = time.monotonic() + deadline_s
    while not consumer.assignment() and time.monotonic() < deadline:  # joined the group
        await consumer.getmany(timeout_ms=100)
    print("READY", flush=True)
    try:
        while relayed < count and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200, max_records=500)
            futures = []
            for records in batch.values():
                for r in records:
                    futures.append(await producer.send(target, r.value, key=r.key, headers=list(r.headers)))
            if futures:
                await asyncio.gather(*futures)
                await consumer.commit()
                relayed += len(futures)
    finally:
        await producer.stop()
        await consumer.stop()


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


async def measure(bootstrap: str, messages: int, size: int, timeout_s: float = 300) -> dict[str, float]:
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
        **admin_options(bootstrap), enable_idempotence=True, acks="all", linger_ms=5, max_batch_size=256 * 1024
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
        body = json.dumps({"pad": "x" * max(0, size - 12)}).encode()
        started = time.monotonic()
        futures = []
        for i in range(messages):
            futures.append(await producer.send(topics[0], body, key=f"APP-{i}".encode(), headers=headers))
            if len(futures) >= 2000:
                await asyncio.gather(*futures)
                futures.clear()
        await asyncio.gather(*futures)
        produced_s = time.monotonic() - started
        received = 0
        deadline = time.monotonic() + timeout_s
        while received < messages and time.monotonic() < deadline:
            batch = await sink.getmany(timeout_ms=200)
            received += sum(len(r) for r in batch.values())
        elapsed = time.monotonic() - started
    finally:
        await producer.stop()
        await sink.stop()
        for proc in relays:
            if proc.poll() is None:
                proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
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
        "message_bytes": len(body),
        "hops": HOPS,
        "produce_s": round(produced_s, 2),
        "elapsed_s": round(elapsed, 2),
        "msgs_per_s": round(received / elapsed, 1),
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
