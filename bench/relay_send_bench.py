"""The outbox relay's producing step alone: `producer.send` per record vs the batch API, CPU per record.

    KAFKA_BOOTSTRAP_SERVERS=... python bench/relay_send_bench.py [--records 30000 --round 1000 --size 1500]

Both ways use the relay's producer (idempotent, acks=all, linger 5 ms, batches up to 1 MiB) and its
round shape: up to `--round` rows, all handed to the producer, then every acknowledgement awaited.
"send": one `await producer.send(...)` per record (what shared/delivery.py's OutboxRelay does);
"batch": records grouped by the partition the default partitioner picks for their key (murmur2, as
`send` does), `create_batch` / `append` / `send_batch` per partition. CPU is this process's
(`time.process_time`), so a busy machine changes the wall time more than the CPU figures. The two
ways alternate, `--repeat` times each. A measurement: it prints, it does not fail.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aiokafka import AIOKafkaProducer  # noqa: E402
from aiokafka.admin import AIOKafkaAdminClient, NewTopic  # noqa: E402
from aiokafka.partitioner import DefaultPartitioner  # noqa: E402

from deploy.local.kafka_users import client_options  # noqa: E402
from shared.acl import ADMIN  # noqa: E402

PARTITIONS = 6
Row = tuple[bytes, bytes, list[tuple[str, bytes]]]


def rows(count: int, size: int) -> list[Row]:
    headers = [
        ("ce_specversion", b"1.0"),
        ("ce_id", b"00000000-0000-0000-0000-000000000000"),
        ("ce_source", b"/clustergrants/budget"),
        ("ce_type", b"org.clustergrants.grants.committed.v1"),
        ("ce_time", b"2026-12-02T05:00:00.000000+00:00"),
        ("ce_subject", b"APP-000000"),
        ("ce_correlationid", b"00000000-0000-0000-0000-000000000000"),
        ("content-type", b"application/json"),
        ("traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
    ]
    body = b"{" + b'"x":"' + b"a" * max(0, size - 8) + b'"}'
    return [(f"APP-{i:06d}".encode(), body, headers) for i in range(count)]


async def by_send(producer: AIOKafkaProducer, topic: str, round_rows: list[Row]) -> None:
    futures = [await producer.send(topic, value=v, key=k, headers=h) for k, v, h in round_rows]
    await asyncio.gather(*futures)


async def by_batch(producer: AIOKafkaProducer, topic: str, round_rows: list[Row], partitioner: DefaultPartitioner) -> None:
    partitions = sorted(await producer.partitions_for(topic))
    grouped: dict[int, list[Row]] = defaultdict(list)
    for row in round_rows:
        grouped[partitioner(row[0], partitions, partitions)].append(row)
    futures: list[asyncio.Future[Any]] = []
    for partition, records in grouped.items():
        batch = producer.create_batch()
        for k, v, h in records:
            if batch.append(key=k, value=v, timestamp=None, headers=h) is None:
                futures.append(await producer.send_batch(batch, topic, partition=partition))
                batch = producer.create_batch()
                batch.append(key=k, value=v, timestamp=None, headers=h)
        futures.append(await producer.send_batch(batch, topic, partition=partition))
    await asyncio.gather(*futures)


async def measure(bootstrap: str, records: int, round_size: int, size: int, repeat: int) -> dict[str, list[float]]:
    topic = f"bench-relay-send-{secrets.token_hex(3)}"
    admin = AIOKafkaAdminClient(**client_options(ADMIN, bootstrap))
    await admin.start()
    producer = AIOKafkaProducer(
        **client_options(ADMIN, bootstrap), enable_idempotence=True, acks="all", linger_ms=5, max_batch_size=1 << 20
    )
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)])
        await producer.start()
        data = rows(records, size)
        partitioner = DefaultPartitioner()
        await by_send(producer, topic, data[:round_size])  # warm-up: metadata, connections
        out: dict[str, list[float]] = {"send": [], "batch": []}
        for _ in range(repeat):
            for way in ("send", "batch"):
                cpu, wall = time.process_time(), time.perf_counter()
                for start in range(0, records, round_size):
                    chunk = data[start : start + round_size]
                    if way == "send":
                        await by_send(producer, topic, chunk)
                    else:
                        await by_batch(producer, topic, chunk, partitioner)
                cpu_us = (time.process_time() - cpu) / records * 1e6
                wall_s = time.perf_counter() - wall
                out[way].append(round(cpu_us, 1))
                print(f"  {way:<5} {records:,} records: {cpu_us:6.1f} µs CPU per record, {records / wall_s:9,.0f} records/s wall")
        return out
    finally:
        await producer.stop()
        try:
            await admin.delete_topics([topic])
        finally:
            await admin.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=30_000)
    parser.add_argument("--round", type=int, default=1000, help="Rows per relay round (OUTBOX_BATCH_SIZE of the bench).")
    parser.add_argument("--size", type=int, default=1500, help="Value bytes per record.")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if not bootstrap:
        sys.exit("KAFKA_BOOTSTRAP_SERVERS must be set (deploy/local/stack.py -- ...)")
    out = asyncio.run(measure(bootstrap, args.records, args.round, args.size, args.repeat))
    for way, figures in out.items():
        print(f"{way}: {min(figures)}-{max(figures)} µs CPU per record over {len(figures)} runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
