"""What one hop costs per record, alone: the eligibility service fed ApplicationReceived records at a
steady rate (each batch a record or two) and then all at once (full batches).

    .venv/bin/python deploy/local/stack.py -- .venv/bin/python bench/hop_cost.py [--records 2000 --rate 100]

For each phase it prints the CPU per record of the service, the Kafka broker and PostgreSQL (from
/proc, as `make bench`), the batches the service handled (its `clustergrants_handling_seconds` count)
and so the records per batch; before them, what each uses per second with nothing to do. The whole
pipeline on this machine is too noisy to say what a batch costs whatever its size; one service, one
topic in and one out, says it in one run: the steady phase's CPU per record against the burst's is
the price of small batches. A benchmark: it prints, it does not fail.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402
from aiokafka import AIOKafkaProducer  # noqa: E402

from bench import cpu  # noqa: E402
from bench.harness import service_env  # noqa: E402
from deploy.local.kafka_users import client_options  # noqa: E402
from shared.acl import producer_of  # noqa: E402
from shared.cloudevents import attributes_for, to_headers  # noqa: E402
from shared.events import Application, ApplicationReceived  # noqa: E402
from shared.topics import Topic, service_source, topic_name  # noqa: E402
from tests.conftest import fresh_database, fresh_topics  # noqa: E402
from tests.processes import ServiceProcesses  # noqa: E402

SAMPLES = ("ttc-voucher.json", "vlaio-spearhead-2019.json", "nic-arena.json", "s3-financing-vinnvaxt.json")
#: The bench's tuning of the consumer and relay (bench/pipeline_bench.py).
TUNING = {"CONSUMER_BATCH_MAX": "500", "CONSUMER_BATCH_TIMEOUT_MS": "20", "OUTBOX_BATCH_SIZE": "1000"}
IDLE_S = 10.0  # the idle phase: what the service, broker and PostgreSQL use with nothing to do
BATCHES = re.compile(r'^clustergrants_handling_seconds_count\{topic="clustergrants\.applications\.received\.v1"\} (\S+)$', re.M)


def received(sample: str, application_id: str) -> ApplicationReceived:
    body = json.loads((ROOT / "deploy/local/samples" / sample).read_text(encoding="utf-8"))
    application = Application.model_validate({**body, "application_id": application_id})
    return ApplicationReceived(
        application_id=application_id, received_at=datetime.now(UTC), channel="kafka", application=application
    )


def batches(ops_port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{ops_port}/metrics", timeout=5) as response:
        found = BATCHES.search(response.read().decode())
    return float(found.group(1)) if found else 0.0


async def phase(
    name: str,
    producer: AIOKafkaProducer,
    topic: str,
    conn: asyncpg.Connection,
    meter: cpu.Meter,
    ops_port: int,
    run: str,
    count: int,
    rate: float | None,
) -> dict[str, Any]:
    source = service_source("intake")
    events = [received(SAMPLES[i % len(SAMPLES)], f"HOP-{run}-{name}-{i}") for i in range(count)]
    before, batches_before, started = meter.snapshot(), batches(ops_port), time.monotonic()
    for i, event in enumerate(events):
        headers = list(to_headers(attributes_for(event, source=source, event_id=secrets.token_hex(8))))
        await producer.send(topic, value=event.model_dump_json().encode(), key=event.key().encode(), headers=headers)
        if rate is not None:
            await asyncio.sleep(max(0.0, started + (i + 1) / rate - time.monotonic()))
    await producer.flush()
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        decided = await conn.fetchval(
            "SELECT count(*) FROM eligibility.decisions WHERE application_id LIKE $1", f"HOP-{run}-{name}-%"
        )
        if decided >= count and await conn.fetchval("SELECT count(*) FROM eligibility.outbox") == 0:
            break
        await asyncio.sleep(0.05)
    used = meter.since(before)
    handled = batches(ops_port) - batches_before
    return {
        "phase": name,
        "records": count,
        "rate_per_s": rate,
        "elapsed_s": round(time.monotonic() - started, 2),
        "batches": int(handled),
        "records_per_batch": round(count / handled, 1) if handled else None,
        "cpu_us_per_record": {group: round(1e6 * seconds / count) for group, seconds in used.items()},
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=100, help="records per second of the steady phase")
    args = parser.parse_args()
    bootstrap, server = os.environ["KAFKA_BOOTSTRAP_SERVERS"], os.environ["DATABASE_URL"]
    run = secrets.token_hex(3)
    with tempfile.TemporaryDirectory(prefix="hop-cost-") as logs:
        async with fresh_database(f"cg_hop_{run}") as database_url:
            prefix = await fresh_topics(bootstrap, f"cg_hop_{run}.")
            env = service_env(bootstrap, database_url, prefix, 1, **{k: os.environ.get(k, v) for k, v in TUNING.items()})
            processes = ServiceProcesses(env, Path(logs))
            processes.start("eligibility")
            producer = AIOKafkaProducer(
                **client_options(producer_of(Topic.APPLICATION_RECEIVED), bootstrap),
                enable_idempotence=True,
                acks="all",
                linger_ms=1,
            )
            conn = await asyncpg.connect(database_url)
            try:
                await asyncio.to_thread(processes.wait_started, 120)
                await producer.start()
                meter = cpu.Meter()
                meter.add("eligibility", lambda: [processes.procs["eligibility"].pid])
                broker = cpu.listener_pid(cpu.port_of(bootstrap))
                meter.add("kafka broker", lambda: [broker] if broker else [])
                meter.add("postgresql", cpu.postgres_pids(cpu.listener_pid(urlsplit(server).port or 5432)))
                topic = topic_name(Topic.APPLICATION_RECEIVED, prefix)
                ops = processes.ops_ports["eligibility"]
                args_of = (producer, topic, conn, meter, ops, run)
                await phase("warmup", *args_of, 200, None)
                before = meter.snapshot()
                await asyncio.sleep(IDLE_S)
                idle = {group: round(1000 * seconds / IDLE_S, 1) for group, seconds in meter.since(before).items()}
                results = [
                    await phase("steady", *args_of, args.records, args.rate),
                    await phase("burst", *args_of, args.records, None),
                ]
            finally:
                await producer.stop()
                await conn.close()
                await asyncio.to_thread(processes.stop_all)
    print(json.dumps({"phase": "idle", "seconds": IDLE_S, "cpu_ms_per_s": idle}))
    for result in results:
        print(json.dumps(result))
    steady, burst = results
    print(f"\nhop cost: eligibility alone, {args.records:,} ApplicationReceived -> EligibilityDecided per phase")
    for r in results:
        rate = f"at {r['rate_per_s']:.0f}/s" if r["rate_per_s"] else "at once"
        print(
            f"  {r['phase']:<7} {rate:<10} {r['batches']:>6,} batches ({r['records_per_batch']} records each): CPU per record "
            + ", ".join(f"{group} {us} µs" for group, us in r["cpu_us_per_record"].items())
        )
    print(f"  idle    {IDLE_S:.0f} s: CPU per second " + ", ".join(f"{group} {ms} ms" for group, ms in idle.items()))
    print(
        "  steady / burst, CPU per record: "
        + ", ".join(
            f"{group} {steady['cpu_us_per_record'][group] / max(1, us):.1f}x" for group, us in burst["cpu_us_per_record"].items()
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
