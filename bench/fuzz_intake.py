"""`make fuzz`: generated payloads at the running intake, over HTTP and over Kafka.

    KAFKA_BOOTSTRAP_SERVERS=... DATABASE_URL=... python bench/fuzz_intake.py [--payloads 10000] [--seed 1]

Starts the four services on a fresh database and topic prefix (bench/harness.py), then sends half the
payloads (bench/fuzz_payloads.py) to POST /v1/applications and half to the submitted topic, each bad
one followed right behind by a good application (over Kafka: same key, so the same partition, next
offset). Checks: every HTTP answer is 202 (received or duplicate) or a 409/422 naming specific errors,
never a 5xx; every Kafka record is consumed and becomes a rejection of its own (found by its position)
or an application; every good follower is received; nothing is dead-lettered; no service exited.
Exit 1 on any violation.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402
import httpx  # noqa: E402
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer  # noqa: E402

from bench.fuzz_payloads import good, payload  # noqa: E402
from deploy.local.kafka_users import client_options  # noqa: E402
from shared.acl import producer_of, reader_of  # noqa: E402
from shared.topics import Topic, topic_name  # noqa: E402

ERROR_TYPE = re.compile(r"^[a-z][a-z0-9_.]*$")


@dataclass
class FuzzReport:
    figures: dict[str, Any] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)


def _specific(errors: Any) -> bool:
    return (
        isinstance(errors, list)
        and len(errors) > 0
        and all(
            isinstance(e, dict)
            and isinstance(e.get("loc"), list)
            and ERROR_TYPE.match(str(e.get("type", "")))
            and isinstance(e.get("message"), str)
            for e in errors
        )
    )


async def fuzz(
    intake_url: str,
    token: str,
    bootstrap: str,
    prefix: str,
    database_url: str,
    payloads: int,
    seed: int,
    alive: Any = None,
    timeout_s: float = 600,
    known_bugs: bool = True,
) -> FuzzReport:
    """`alive()`: names of services that exited (checked at the end); None to skip. `known_bugs`: include
    deeply nested JSON and NUL characters (known intake bugs: HTTP 500 / dead letter) among the payloads."""
    report = FuzzReport()
    f = report.figures
    rng = random.Random(seed)
    run = f"FZ{seed:x}{rng.randrange(16**4):04x}"
    half = payloads // 2
    http_cases = [(f"{run}-H{i}", payload(rng, f"{run}-H{i}", known_bugs)) for i in range(half)]
    kafka_cases = [(f"{run}-K{i}", payload(rng, f"{run}-K{i}", known_bugs)) for i in range(payloads - half)]
    started = time.monotonic()

    # --- HTTP: each bad one, then a good one, from 8 concurrent portals --------------------------
    statuses: Counter[str] = Counter()
    http_bad: list[str] = []
    good_ids: list[str] = []
    queue: asyncio.Queue[tuple[int, str, bytes]] = asyncio.Queue()
    for i, (app_id, raw) in enumerate(http_cases):
        queue.put_nowait((i, app_id, raw))

    async def portal(client: httpx.AsyncClient) -> None:
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        while not queue.empty():
            i, app_id, raw = queue.get_nowait()
            try:
                response = await client.post(f"{intake_url}/v1/applications", content=raw, headers=headers)
            except httpx.HTTPError as error:  # the server dropped the connection: a 5xx in effect
                statuses[type(error).__name__] += 1
                http_bad.append(f"{app_id}: {type(error).__name__} (no answer)")
                response = None
            if response is None:
                pass
            else:
                statuses[str(response.status_code)] += 1
            if response is None:
                pass
            elif response.status_code == 202:
                if response.json().get("status") not in ("received", "duplicate"):
                    http_bad.append(f"{app_id}: 202 {response.text[:200]}")
            elif response.status_code in (409, 422):
                if not _specific(response.json().get("errors")):
                    http_bad.append(f"{app_id}: {response.status_code} without specific errors: {response.text[:200]}")
            elif response.status_code != 413:
                http_bad.append(f"{app_id}: HTTP {response.status_code} {response.text[:200]}")
            follower = f"{run}-HG{i}"
            answer = await client.post(f"{intake_url}/v1/applications", content=good(follower, i), headers=headers)
            if answer.status_code != 202:
                http_bad.append(f"good follower {follower}: HTTP {answer.status_code}")
            good_ids.append(follower)

    async with httpx.AsyncClient(timeout=30) as client:
        await asyncio.gather(*(portal(client) for _ in range(8)))
    f["http"] = {"payloads": len(http_cases), "statuses": dict(statuses), "s": round(time.monotonic() - started, 1)}
    if http_bad:
        report.violations.append(f"{len(http_bad)} HTTP answers were not 202 or a specific rejection: {http_bad[:5]}")

    # --- Kafka: each bad record, then a good one with the same key (same partition, next offset) ---
    topic = topic_name(Topic.APPLICATION_SUBMITTED, prefix)
    producer = AIOKafkaProducer(  # as an agency portal (shared/acl.py)
        **client_options(producer_of(Topic.APPLICATION_SUBMITTED), bootstrap),
        enable_idempotence=True,
        acks="all",
        linger_ms=5,
        max_request_size=4 * 1024 * 1024,
    )
    await producer.start()
    positions: dict[str, str] = {}
    try:
        futures = []
        for i, (app_id, raw) in enumerate(kafka_cases):
            key = app_id.encode()
            futures.append((app_id, await producer.send(topic, raw, key=key)))
            futures.append((f"{run}-KG{i}", await producer.send(topic, good(f"{run}-KG{i}", i), key=key)))
            if len(futures) >= 1000:
                for name, fut in futures:
                    meta = await fut
                    positions[name] = f"{meta.topic}:{meta.partition}:{meta.offset}"
                futures.clear()
        for name, fut in futures:
            meta = await fut
            positions[name] = f"{meta.topic}:{meta.partition}:{meta.offset}"
    finally:
        await producer.stop()
    kafka_good = [f"{run}-KG{i}" for i in range(len(kafka_cases))]
    good_ids += kafka_good

    # --- wait until intake consumed all of them, then check from the database --------------------
    conn = await asyncpg.connect(database_url)
    try:
        wanted = list(positions.values())
        deadline = time.monotonic() + timeout_s
        consumed, last, still_since = 0, -1, time.monotonic()
        while time.monotonic() < deadline:
            consumed = await conn.fetchval("SELECT count(*) FROM intake.inbox WHERE event_id = ANY($1::text[])", wanted)
            if consumed >= len(wanted):
                break
            if consumed != last:
                last, still_since = consumed, time.monotonic()
            elif time.monotonic() - still_since > 20:  # the rest failed (parked records claim nothing): stop waiting
                break
            await asyncio.sleep(0.5)
        f["kafka"] = {"records": len(wanted), "consumed": consumed, "s": round(time.monotonic() - started, 1)}
        if consumed < len(wanted):
            report.violations.append(f"intake handled only {consumed} of {len(wanted)} fuzz records (the rest failed)")
        rejected = {
            r[0]: r[1]
            for r in await conn.fetch(
                "SELECT source_reference, errors FROM intake.rejections WHERE source_reference = ANY($1::text[])",
                [positions[a] for a, _ in kafka_cases],
            )
        }
        received = {
            r[0]
            for r in await conn.fetch(
                "SELECT application_id FROM intake.applications WHERE application_id = ANY($1::text[])", good_ids
            )
        }
        # A claimed record was handled: a rejection (found by its position) or an application (received or a
        # duplicate; its id may itself be a mutation). An unclaimed one failed: retried, then parked.
        claimed = {r[0] for r in await conn.fetch("SELECT event_id FROM intake.inbox WHERE event_id = ANY($1::text[])", wanted)}
        neither = [a for a, _ in kafka_cases if positions[a] not in claimed]
        unspecific = [
            p for p, errors in rejected.items() if not _specific(errors if isinstance(errors, list) else json.loads(errors))
        ]
        missing_good = [g for g in good_ids if g not in received]
        types = Counter()
        for errors in rejected.values():
            for e in errors if isinstance(errors, list) else json.loads(errors):
                types[e["type"]] += 1
        f["kafka"].update(
            {
                "rejected": len(rejected),
                "valid_or_duplicate": len(kafka_cases) - len(rejected) - len(neither),
                "failed": len(neither),
            }
        )
        f["rejection_types"] = dict(types.most_common(25))
        f["good_followers"] = {"sent": len(good_ids), "received": len(good_ids) - len(missing_good)}
        if neither:
            report.violations.append(f"{len(neither)} Kafka payloads neither rejected nor received: {neither[:5]}")
        if unspecific:
            report.violations.append(f"{len(unspecific)} rejections without specific errors: {unspecific[:5]}")
        if missing_good:
            report.violations.append(f"{len(missing_good)} good applications behind bad ones not received: {missing_good[:5]}")
    finally:
        await conn.close()

    # --- nothing parked, nobody exited -----------------------------------------------------------
    consumer = AIOKafkaConsumer(  # as the operator, the only one besides the services who may read dead letters
        topic_name(Topic.DEAD_LETTER, prefix),
        **client_options(reader_of(Topic.DEAD_LETTER), bootstrap),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    parked = 0
    try:
        for records in (await consumer.getmany(timeout_ms=2000)).values():
            parked += sum(1 for r in records if dict(r.headers).get("cg_dlt_group") == b"clustergrants.intake")
    finally:
        await consumer.stop()
    f["dead_lettered_by_intake"] = parked
    if parked:
        report.violations.append(f"{parked} fuzz records dead-lettered by intake")
    if alive is not None:
        exited = alive()
        f["services_exited"] = exited
        if exited:
            report.violations.append(f"services exited during the fuzz run: {exited}")
    f["elapsed_s"] = round(time.monotonic() - started, 1)
    return report


async def standalone(args: argparse.Namespace) -> FuzzReport:
    from bench.harness import pipeline

    bootstrap, server = os.environ["KAFKA_BOOTSTRAP_SERVERS"], os.environ["DATABASE_URL"]
    with tempfile.TemporaryDirectory(prefix="cg-fuzz-") as tmp:
        async with pipeline(
            bootstrap,
            server,
            args.logs or Path(tmp),
            name=f"cg_fuzz_{os.getpid()}",
            INTAKE_API_TOKENS="fuzz-token",
            CONSUMER_BATCH_MAX="500",
        ) as stack:

            def exited() -> list[str]:
                return [n for n, p in stack.processes.procs.items() if p.poll() is not None]

            return await fuzz(
                stack.intake_url,
                "fuzz-token",
                bootstrap,
                stack.prefix,
                stack.database_url,
                args.payloads,
                args.seed,
                exited,
                args.timeout,
                not args.no_known_bugs,
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--payloads", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=int(time.time()) % 100_000)
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--logs", type=Path, help="keep the service logs here")
    parser.add_argument(
        "--no-known-bugs", action="store_true", help="leave out deeply nested JSON and NUL characters (known intake bugs)"
    )
    args = parser.parse_args()
    report = asyncio.run(standalone(args))
    print(json.dumps(report.figures, indent=2))
    if report.violations:
        print(f"FUZZ RUN FAILED (seed {args.seed}):")
        for v in report.violations:
            print(f"  - {v}")
        return 1
    print(f"fuzz run ok: {args.payloads:,} payloads (seed {args.seed}), each a specific rejection or an application")
    return 0


if __name__ == "__main__":
    sys.exit(main())
