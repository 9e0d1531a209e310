"""What one round trip costs on this machine, client and server: a Kafka produce request, a fetch, an
offset commit, a PostgreSQL statement, each alone at a steady rate.

    .venv/bin/python deploy/local/stack.py -- .venv/bin/python bench/request_cost.py [--rate 100 --seconds 15]

At a steady rate every batch a service handles pays its round trips whatever its size: the consumer's
fetch, the transaction's statements, the relay's produce request, the offset commit. This prints the
price of each, in CPU per step of the server (the broker, or PostgreSQL with all its backends) and of
this client (aiokafka, asyncpg), so that a hop's CPU per batch can be read as a sum of round trips.
Each step is awaited before the next, as a service awaits them. The pacing loop alone is measured
too and is part of every client figure. Each line also says how long a step took (p50 / p99), the
server's own waits included (the group coordinator lingers 5 ms before it writes a batch of offset
commits: `group.coordinator.append.linger.ms`). The broker first serves a warm-up (its JIT compiles;
the stack's broker runs C1 only). The last line is every figure as JSON. A benchmark: it prints, it
does not fail.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition  # noqa: E402
from aiokafka.structs import OffsetAndMetadata  # noqa: E402

from bench import cpu  # noqa: E402
from deploy.local.kafka_users import client_options  # noqa: E402
from shared.acl import producer_of, service_group  # noqa: E402
from shared.topics import Topic, topic_name  # noqa: E402
from tests.conftest import fresh_topics  # noqa: E402

#: About the pipeline's mean record (bench/relay_limit.py uses the same figure).
RECORD = b"x" * 1500
Step = Callable[[int], Awaitable[object]]


async def paced(count: int, rate: float, step: Step) -> list[float]:
    """Run `step` `count` times at `rate`; how long each took, in seconds."""
    took: list[float] = []
    started = time.monotonic()
    for i in range(count):
        began = time.perf_counter()
        await step(i)
        took.append(time.perf_counter() - began)
        ahead = started + (i + 1) / rate - time.monotonic()
        if ahead > 0:
            await asyncio.sleep(ahead)
    return took


async def measure(name: str, server: Callable[[], float], count: int, rate: float, step: Step) -> dict[str, object]:
    me = os.getpid()
    server_before, client_before, started = server(), cpu.cpu_s(me) or 0.0, time.monotonic()
    took = sorted(await paced(count, rate, step))
    elapsed = time.monotonic() - started
    server_used, client_used = server() - server_before, (cpu.cpu_s(me) or 0.0) - client_before
    row = {
        "step": name,
        "count": count,
        "rate_per_s": round(count / elapsed, 1),
        "server_us": round(1e6 * server_used / count),
        "client_us": round(1e6 * client_used / count),
        "took_p50_ms": round(1000 * took[len(took) // 2], 2),
        "took_p99_ms": round(1000 * took[int(len(took) * 0.99)], 2),
    }
    print(
        f"  {name:48s} server {row['server_us']:>5} µs, client {row['client_us']:>5} µs per step;"
        f" it took p50 {row['took_p50_ms']} / p99 {row['took_p99_ms']} ms ({row['rate_per_s']}/s)"
    )
    return row


async def kafka_steps(bootstrap: str, rate: float, count: int, warmup: int) -> list[dict[str, object]]:
    run = secrets.token_hex(3)
    prefix = await fresh_topics(bootstrap, f"cg_cost_{run}.")
    topic = topic_name(Topic.APPLICATION_RECEIVED, prefix)
    broker_pid = cpu.listener_pid(cpu.port_of(bootstrap))

    def broker() -> float:
        return (cpu.cpu_s(broker_pid) if broker_pid else None) or 0.0

    # Idempotent and acks=all as the services' outbox relays (shared/runtime.py); no linger: one record a request.
    producer = AIOKafkaProducer(
        **client_options(producer_of(Topic.APPLICATION_RECEIVED), bootstrap), enable_idempotence=True, acks="all", linger_ms=0
    )
    consumer = AIOKafkaConsumer(
        **client_options("eligibility", bootstrap),
        group_id=f"{service_group('eligibility')}.cost-{run}",  # under the service's group prefix (shared/acl.py)
        enable_auto_commit=False,
    )
    tp = TopicPartition(topic, 0)
    rows: list[dict[str, object]] = []
    await producer.start()
    await consumer.start()
    try:

        async def produce(i: int) -> object:
            return await producer.send_and_wait(topic, RECORD, key=b"%d" % i, partition=0)

        async def commit(i: int) -> object:
            return await consumer.commit({tp: OffsetAndMetadata(i + 1, "")})

        await measure("(Kafka warm-up: produce)", broker, warmup, rate, produce)
        rows.append(await measure("Kafka: produce request, one record", broker, count, rate, produce))
        consumer.assign([tp])  # assigned, not subscribed: no rebalance, commits as a group of one
        rows.append(await measure("Kafka: offset commit", broker, count, rate, commit))
        await consumer.seek_to_end(tp)
        fetched = 0

        async def fetch_all() -> None:
            nonlocal fetched
            while True:
                batch = await consumer.getmany(tp, timeout_ms=1000)
                fetched += sum(len(records) for records in batch.values())

        fetching = asyncio.create_task(fetch_all())
        try:
            rows.append(await measure("Kafka: produce request while a consumer fetches", broker, count, rate, produce))
        finally:
            fetching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await fetching
        print(f"    (the consumer fetched {fetched} of {count} records)")
    finally:
        await consumer.stop()
        await producer.stop()
    return rows


async def postgres_steps(database_url: str, rate: float, count: int) -> list[dict[str, object]]:
    pids = cpu.postgres_pids(cpu.listener_pid(urlsplit(database_url).port or 5432))

    def server() -> float:
        return sum(cpu.cpu_s(pid) or 0.0 for pid in pids())

    conn = await asyncpg.connect(database_url)
    rows: list[dict[str, object]] = []
    try:

        async def one(_: int) -> object:
            return await conn.fetchval("SELECT 1")

        async def five(_: int) -> object:
            for _ in range(5):
                await conn.fetchval("SELECT 1")
            return None

        async def transaction(_: int) -> object:
            async with conn.transaction():
                return await conn.fetchval("SELECT 1")

        async def nothing(_: int) -> object:
            return None

        rows.append(await measure("PostgreSQL: one statement", server, count, rate, one))
        rows.append(await measure("PostgreSQL: five statements back to back", server, count, rate, five))
        rows.append(await measure("PostgreSQL: BEGIN, one statement, COMMIT", server, count, rate, transaction))
        rows.append(await measure("the pacing loop alone (no round trip)", server, count, rate, nothing))
    finally:
        await conn.close()
    return rows


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=100, help="steps per second")
    parser.add_argument("--seconds", type=float, default=15, help="how long each step is repeated")
    parser.add_argument("--warmup-seconds", type=float, default=30, help="produce requests before the first figure")
    args = parser.parse_args()
    count, warmup = int(args.rate * args.seconds), int(args.rate * args.warmup_seconds)
    print(f"request cost: each step {count} times at {args.rate:g}/s, awaited one after the other")
    rows = await kafka_steps(os.environ["KAFKA_BOOTSTRAP_SERVERS"], args.rate, count, warmup)
    rows += await postgres_steps(os.environ["DATABASE_URL"], args.rate, count)
    print(json.dumps({"request_cost": rows, "rate_per_s": args.rate, "steps": count}))


if __name__ == "__main__":
    asyncio.run(main())
