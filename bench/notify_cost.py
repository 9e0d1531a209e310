"""What notify costs per application, alone: notify fed the decisions and grants of applications (as
eligibility and budget publish them), sending every e-mail and webhook they owe to local sinks.

    .venv/bin/python deploy/local/stack.py -- .venv/bin/python bench/notify_cost.py [--applications 1500 --rounds 2]

The events are real ones: each sample of deploy/local/samples decided by eligibility's own rules
(`decide`), and each eligible one's grant committed as budget would commit it. Per application
notify then owes the applicant one e-mail (the refusal, or the grant explaining the decision) and
the agency's subscription (bench/harness.py WebhookSink: every application outcome) a webhook per
event. Each round produces all of its applications at once and waits until every message is sent
and every NotificationSent relayed. It prints the CPU per application of notify, the mail sink, the
webhook sink, the Kafka broker and PostgreSQL (from /proc, as `make bench`), and the messages sent.
In the pipeline bench notify is the one process at a full core while the burst's e-mails go out;
this measures it without the other services' noise. A benchmark: it prints, it does not fail.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402
from aiokafka import AIOKafkaProducer  # noqa: E402

from bench import cpu  # noqa: E402
from bench.harness import SmtpSink, WebhookSink, service_env  # noqa: E402
from bench.pipeline_bench import TUNING  # noqa: E402
from deploy.local.kafka_users import client_options  # noqa: E402
from services.eligibility.handlers import decide  # noqa: E402
from services.eligibility.parameters import ParameterStore  # noqa: E402
from shared.acl import producer_of  # noqa: E402
from shared.cloudevents import attributes_for, to_headers  # noqa: E402
from shared.events import Application, ApplicationReceived, EligibilityDecided, Event, GrantCommitted  # noqa: E402
from shared.topics import Topic, service_source, topic_name  # noqa: E402
from tests.conftest import fresh_database, fresh_topics  # noqa: E402
from tests.processes import ServiceProcesses  # noqa: E402

SAMPLES = sorted(p.name for p in (ROOT / "deploy/local/samples").glob("*.json") if not p.name.startswith("zz-"))


def outcomes(parameters: ParameterStore, application_id: str, sample: str) -> list[Event]:
    """What eligibility and budget would publish for one application of `sample`."""
    body = json.loads((ROOT / "deploy/local/samples" / sample).read_text(encoding="utf-8"))
    application = Application.model_validate({**body, "application_id": application_id})
    received = ApplicationReceived(
        application_id=application_id, received_at=datetime.now(UTC), channel="kafka", application=application
    )
    decided = decide(received, parameters)
    events: list[Event] = [decided]
    if decided.outcome == "eligible" and decided.proposed_grant is not None:
        events.append(
            GrantCommitted(
                application_id=application_id,
                grant_id=f"G-{application_id}",
                committed_at=datetime.now(UTC),
                scheme=decided.scheme,
                grant=decided.proposed_grant,
                recipient=decided.recipient,
            )
        )
    return events


async def produce(producers: dict[Topic, AIOKafkaProducer], prefix: str, events: list[Event]) -> None:
    futures = []
    for event in events:
        topic = Topic.ELIGIBILITY_DECIDED if isinstance(event, EligibilityDecided) else Topic.GRANT_COMMITTED
        source = service_source("eligibility" if topic is Topic.ELIGIBILITY_DECIDED else "budget")
        headers = list(to_headers(attributes_for(event, source=source)))
        futures.append(
            await producers[topic].send(
                topic_name(topic, prefix), value=event.model_dump_json().encode(), key=event.key().encode(), headers=headers
            )
        )
    await asyncio.gather(*futures)


async def round_(
    name: str,
    producers: dict[Topic, AIOKafkaProducer],
    prefix: str,
    conn: asyncpg.Connection,
    meter: cpu.Meter,
    parameters: ParameterStore,
    count: int,
) -> dict[str, Any]:
    apps = [(f"NC-{name}-{i}", SAMPLES[i % len(SAMPLES)]) for i in range(count)]
    events = [event for app, sample in apps for event in outcomes(parameters, app, sample)]
    before, started = meter.snapshot(), time.monotonic()
    await produce(producers, prefix, events)
    deadline = time.monotonic() + 600
    row: Any = None
    while time.monotonic() < deadline:
        row = await conn.fetchrow(
            """SELECT count(DISTINCT source_event_id) AS events, count(*) AS messages,
                      count(*) FILTER (WHERE status <> 'sent') AS unsent,
                      count(*) FILTER (WHERE channel = 'email') AS emails,
                      (SELECT count(*) FROM notify.outbox) AS outbox
               FROM notify.notifications WHERE application_id LIKE $1""",
            f"NC-{name}-%",
        )
        if row["events"] >= len(events) and row["unsent"] == 0 and row["outbox"] == 0:
            break
        await asyncio.sleep(0.05)
    elapsed = time.monotonic() - started
    used = meter.since(before)
    return {
        "round": name,
        "applications": count,
        "events": len(events),
        "messages": row["messages"],
        "emails": row["emails"],
        "unsent": row["unsent"],
        "elapsed_s": round(elapsed, 2),
        "applications_per_s": round(count / elapsed, 1),
        "cpu_us_per_application": {group: round(1e6 * seconds / count) for group, seconds in used.items()},
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--applications", type=int, default=1500, help="applications per round")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    bootstrap, server = os.environ["KAFKA_BOOTSTRAP_SERVERS"], os.environ["DATABASE_URL"]
    parameters = ParameterStore.load(operator_file=ROOT / "deploy/local/operator-parameters.yaml")
    run = secrets.token_hex(3)
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="notify-cost-") as logs:
        log_dir = Path(logs)
        async with fresh_database(f"cg_notify_{run}") as database_url:
            prefix = await fresh_topics(bootstrap, f"cg_notify_{run}.")
            smtp, hooks = SmtpSink(log_dir), WebhookSink(log_dir)
            tuning = {k: os.environ.get(k, v) for k, v in TUNING.items()}
            env = service_env(bootstrap, database_url, prefix, smtp.port, **hooks.env(), **tuning)
            processes = ServiceProcesses(env, log_dir)
            processes.start("notify")
            producers = {
                topic: AIOKafkaProducer(
                    **client_options(producer_of(topic), bootstrap), enable_idempotence=True, acks="all", linger_ms=5
                )
                for topic in (Topic.ELIGIBILITY_DECIDED, Topic.GRANT_COMMITTED)
            }
            conn = await asyncpg.connect(database_url)
            try:
                await asyncio.to_thread(processes.wait_started, 120)
                for producer in producers.values():
                    await producer.start()
                meter = cpu.Meter()
                meter.add("notify", lambda: [processes.procs["notify"].pid])
                meter.add("mail sink", lambda: [smtp.proc.pid])
                meter.add("webhook sink", lambda: [hooks.proc.pid])
                broker = cpu.listener_pid(cpu.port_of(bootstrap))
                meter.add("kafka broker", lambda: [broker] if broker else [])
                meter.add("postgresql", cpu.postgres_pids(cpu.listener_pid(urlsplit(server).port or 5432)))
                await round_("warmup", producers, prefix, conn, meter, parameters, 100)
                for i in range(args.rounds):
                    results.append(await round_(f"r{i + 1}-{run}", producers, prefix, conn, meter, parameters, args.applications))
                    print(json.dumps(results[-1]), flush=True)
            finally:
                for producer in producers.values():
                    await producer.stop()
                await conn.close()
                await asyncio.to_thread(processes.stop_all)
                smtp.stop()
                hooks.stop()
    first = results[0]
    print(
        f"\nnotify cost: {args.applications:,} applications at once per round ({first['events']:,} events, "
        f"{first['messages']:,} messages of which {first['emails']:,} e-mails)"
    )
    for r in results:
        print(
            f"  {r['round']:<10} {r['elapsed_s']:6.1f} s, {r['applications_per_s']:6.1f} applications/s; CPU per application: "
            + ", ".join(f"{group} {us} µs" for group, us in r["cpu_us_per_application"].items())
        )
    median = statistics.median(r["cpu_us_per_application"]["notify"] for r in results)
    per_message = median * args.applications / max(1, first["messages"])
    print(f"  notify, median of the rounds: {median:,.0f} µs per application, {per_message:,.0f} µs per message")


if __name__ == "__main__":
    asyncio.run(main())
