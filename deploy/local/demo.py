"""`make demo`: submit the sample applications through the public HTTP intake, wait for their
outcomes on the public topics, and print one row per submission.

Runs under deploy/local/stack.py, which starts Kafka, PostgreSQL, the mail sink and the services
and sets INTAKE_URL, KAFKA_BOOTSTRAP_SERVERS and TOPIC_PREFIX. It reads the outcomes as an agency
system would: as the `agency-reader` principal, in a consumer group named `agency.*` (shared/acl.py).
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer

from deploy.local.kafka_users import client_options
from shared.acl import AGENCY_GROUP_PREFIX, AGENCY_READER
from shared.topics import Topic, topic_name

SAMPLES = Path(__file__).with_name("samples")
WATCHED = [
    Topic.APPLICATION_REJECTED,
    Topic.ELIGIBILITY_DECIDED,
    Topic.GRANT_COMMITTED,
    Topic.GRANT_REFUSED,
    Topic.NOTIFICATION_SENT,
]
TIMEOUT_S = 60


@dataclass
class Row:
    name: str
    application_id: str | None
    scheme: str
    http_status: int = 0
    decision: str = "-"
    commitment: str = "-"
    notification: str = "-"
    done: bool = False
    notes: list[str] = field(default_factory=list)


def money(body: dict[str, Any]) -> str:
    total = sum(s["amount"]["amount_minor"] for s in body["grant"]["schedule"])
    major, minor = divmod(total, 100)
    return f"{body['grant']['currency']} {major:,}.{minor:02d}"


async def submit(client: httpx.AsyncClient, url: str, token: str, path: Path, run: str) -> Row:
    raw = path.read_bytes()  # noqa: ASYNC240  (a small local file)
    try:
        document = json.loads(raw)
    except ValueError:
        document = None
    if isinstance(document, dict) and isinstance(document.get("application_id"), str):
        document["application_id"] = f"{document['application_id']}-{run}"  # a fresh id per demo run
        raw = json.dumps(document).encode()
    app_id = document.get("application_id") if isinstance(document, dict) else None
    scheme = str(document.get("scheme", "?")) if isinstance(document, dict) else "?"
    row = Row(path.stem, app_id if isinstance(app_id, str) else None, scheme)
    response = await client.post(
        f"{url}/v1/applications", content=raw, headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    )
    row.http_status = response.status_code
    if response.status_code >= 400:
        errors = response.json().get("errors", [])
        row.decision = f"rejected ({len(errors)} error{'s' if len(errors) != 1 else ''})"
        row.notes = [f"{'.'.join(map(str, e['loc'])) or '(body)'}: {e['type']}" for e in errors[:3]]
        row.commitment = "-"
    return row


def settle(row: Row, topic: Topic, body: dict[str, Any]) -> None:
    if topic is Topic.ELIGIBILITY_DECIDED:
        row.decision = body["outcome"]
        failed = [c["criterion"] for c in body["criteria"] if c["outcome"] != "passed"]
        row.notes = failed[:3]
        if body["outcome"] != "eligible" or body.get("proposed_grant") is None:
            row.commitment = "n/a"
    elif topic is Topic.GRANT_COMMITTED:
        row.commitment = f"committed {money(body)}"
    elif topic is Topic.GRANT_REFUSED:
        row.commitment = f"refused ({body['limit']})"
    elif topic is Topic.NOTIFICATION_SENT:
        row.notification = f"{body['channel']} ({body['template']})"
    row.done = row.notification != "-" and row.commitment != "-"


async def main() -> int:
    url = os.environ.get("INTAKE_URL", "http://127.0.0.1:28080")
    token = os.environ.get("INTAKE_API_TOKENS", "dev-token").split(",")[0]
    prefix = os.environ.get("TOPIC_PREFIX", "")
    run = secrets.token_hex(3)
    consumer = AIOKafkaConsumer(
        *[topic_name(t, prefix) for t in WATCHED],
        **client_options(AGENCY_READER, os.environ["KAFKA_BOOTSTRAP_SERVERS"]),
        group_id=f"{AGENCY_GROUP_PREFIX}demo-{run}",
        auto_offset_reset="latest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        # Wait until partitions are assigned, so nothing published after this point is missed.
        deadline = time.monotonic() + 30
        while not consumer.assignment() and time.monotonic() < deadline:
            await consumer.getmany(timeout_ms=200)
        for tp in consumer.assignment():
            await consumer.position(tp)
        async with httpx.AsyncClient(timeout=15) as client:
            rows = [await submit(client, url, token, path, run) for path in sorted(SAMPLES.glob("*.json"))]
        by_id = {r.application_id: r for r in rows if r.application_id}
        names = {topic_name(t, prefix): t for t in WATCHED}
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline and not all(r.done for r in by_id.values() if r.http_status < 400):
            batch = await consumer.getmany(timeout_ms=300)
            for records in batch.values():
                for record in records:
                    body = json.loads(record.value)
                    row = by_id.get(body.get("application_id"))
                    if row is not None:
                        settle(row, names[record.topic], body)
        # Rejected submissions are told too, when their contact could be read.
        deadline = time.monotonic() + 5
        untold = [r for r in rows if r.http_status >= 400 and r.application_id]
        while time.monotonic() < deadline and any(r.notification == "-" for r in untold):
            for records in (await consumer.getmany(timeout_ms=300)).values():
                for record in records:
                    body = json.loads(record.value)
                    row = by_id.get(body.get("application_id"))
                    if row is not None and names[record.topic] is Topic.NOTIFICATION_SENT:
                        row.notification = f"{body['channel']} ({body['template']})"
    finally:
        await consumer.stop()

    header = ("sample", "application", "scheme", "decision", "commitment", "notification", "why (criteria not passed)")
    table = [header] + [
        (r.name, r.application_id or "-", r.scheme, r.decision, r.commitment, r.notification, ", ".join(r.notes) or "-")
        for r in rows
    ]
    widths = [max(len(str(row[i])) for row in table) for i in range(len(header))]
    for i, line in enumerate(table):
        print("  ".join(str(cell).ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())
        if i == 0:
            print("  ".join("-" * width for width in widths))
    pending = [r.name for r in rows if r.http_status < 400 and not r.done]
    counts = {
        "submitted": len(rows),
        "rejected": sum(r.http_status >= 400 for r in rows),
        "eligible": sum(r.decision == "eligible" for r in rows),
        "ineligible": sum(r.decision == "ineligible" for r in rows),
        "needs review": sum(r.decision == "needs_review" for r in rows),
        "committed": sum(r.commitment.startswith("committed") for r in rows),
        "refused": sum(r.commitment.startswith("refused") for r in rows),
        "notified": sum(r.notification != "-" for r in rows),
    }
    print()
    if pending:
        print(f"still waiting after {TIMEOUT_S} s for: {', '.join(pending)}", file=sys.stderr)
    print("demo: " + ", ".join(f"{v} {k}" for k, v in counts.items()) + (" (INCOMPLETE)" if pending else ""))
    return 1 if pending else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
