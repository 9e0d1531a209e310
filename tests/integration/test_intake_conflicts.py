"""A conflicting resubmission on the real PostgreSQL (issue 10): it is rejected as itself, never as the
received application's fate, never e-mailed; the same instant with another offset is no conflict."""

from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from services.intake import handlers
from services.intake.domain import parse_submission
from services.notify.domain import Subscriptions, plan
from shared.delivery import UnitOfWork
from shared.events import ApplicationRejected

pytestmark = pytest.mark.integration

SAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "local" / "samples" / "ttc-voucher.json"
KEY = b"integration-test recipient-ref key 0123"


def body(app_id: str, **changes: Any) -> bytes:
    document = json.loads(SAMPLE.read_text())
    document["application_id"] = app_id
    document.update(changes)
    return json.dumps(document).encode()


async def receive(pool: asyncpg.Pool, raw: bytes) -> tuple[handlers.Outcome, list[dict[str, Any]]]:
    async with pool.acquire() as conn, conn.transaction():
        uow = UnitOfWork(conn=conn, schema="intake", source="/clustergrants/intake")
        outcome = await handlers.receive(uow, raw, "http")
        published = [
            {"topic": r["topic"], "key": r["key"], "payload": json.loads(bytes(r["payload"]))}
            for r in await conn.fetch(
                "SELECT topic, key, payload FROM intake.outbox WHERE event_id = ANY($1::uuid[]) ORDER BY id", uow.event_ids
            )
        ]
    return outcome, published


async def test_a_conflicting_resubmission_is_rejected_as_itself(pool: asyncpg.Pool) -> None:
    app_id = f"IT-CONFLICT-{uuid.uuid4().hex[:8]}"
    first, _ = await receive(pool, body(app_id))
    assert first.status == "received"
    other_contact = {"name": "Someone Else", "email": "someone.else@example.org"}
    outcome, published = await receive(pool, body(app_id, contact=other_contact, sectors=["other-sector"]))

    assert outcome.status == "conflict" and outcome.conflicts_with == app_id and outcome.application_id is None
    assert [e.type for e in outcome.errors] == ["application_id_conflict"]
    [event] = published
    rejection = ApplicationRejected.model_validate(event["payload"])
    assert event["topic"] == "clustergrants.applications.rejected.v1"
    assert event["key"] == rejection.rejection_id == outcome.rejection_id, "keyed by its own rejection id"
    assert rejection.application_id is None and rejection.contact is None and rejection.conflicts_with == app_id
    assert "someone.else" not in json.dumps(event["payload"])

    # notify e-mails nobody for it (webhook subscribers still see it), and history, which reads
    # intake.rejections by application id (services/cli.py), does not list it under the original.
    assert [p.channel for p in plan(rejection, Subscriptions(), ref_key=KEY)] == []
    history = await pool.fetch("SELECT reason FROM intake.rejections WHERE application_id = $1", app_id)
    assert history == []
    stored = await pool.fetchrow(
        "SELECT application_id, conflicts_with FROM intake.rejections WHERE rejection_id = $1", rejection.rejection_id
    )
    assert stored is not None and stored["application_id"] is None and stored["conflicts_with"] == app_id


async def test_an_invalid_submission_is_still_told_to_its_contact(pool: asyncpg.Pool) -> None:
    app_id = f"IT-INVALID-{uuid.uuid4().hex[:8]}"
    outcome, [event] = await receive(pool, body(app_id, submitted_at="2999-01-01T00:00:00Z"))
    assert outcome.status == "rejected" and outcome.application_id == app_id
    rejection = ApplicationRejected.model_validate(event["payload"])
    assert [p.template for p in plan(rejection, Subscriptions(), ref_key=KEY)] == ["application.rejected"]


async def test_the_same_instant_with_another_offset_is_a_duplicate_not_a_conflict(pool: asyncpg.Pool) -> None:
    app_id = f"IT-OFFSET-{uuid.uuid4().hex[:8]}"
    first, _ = await receive(pool, body(app_id, submitted_at="2012-04-02T09:00:00+02:00"))
    again, published = await receive(pool, body(app_id, submitted_at="2012-04-02T07:00:00Z"))
    assert (first.status, again.status, published) == ("received", "duplicate", [])


async def test_a_fingerprint_stored_by_an_earlier_version_still_recognises_the_same_body(pool: asyncpg.Pool) -> None:
    app_id = f"IT-OLDPRINT-{uuid.uuid4().hex[:8]}"
    raw = body(app_id, submitted_at="2012-04-02T09:00:00+02:00")
    await receive(pool, raw)
    application = parse_submission(raw)
    old = hashlib.sha256(
        # (ignore below) parsed above: an Application
        json.dumps(application.model_dump(mode="json"), sort_keys=True, separators=(",", ":")).encode()  # type: ignore[union-attr]
    ).hexdigest()
    await pool.execute("UPDATE intake.applications SET body_sha256 = $2 WHERE application_id = $1", app_id, old)
    again, published = await receive(pool, raw)
    assert (again.status, published) == ("duplicate", [])


async def test_a_consumed_batch_is_received_as_if_one_at_a_time(pool: asyncpg.Pool) -> None:
    """One batch: a new application, again with the same body, again with another; an invalid one;
    one received before this batch, again with the same body and with another. The first of an id
    is received; the answers are published in the batch's order."""
    run = uuid.uuid4().hex[:8]
    new, old, bad = f"IT-BATCH-{run}-NEW", f"IT-BATCH-{run}-OLD", f"IT-BATCH-{run}-BAD"
    await receive(pool, body(old))
    other = {"contact": {"name": "Someone Else", "email": "someone.else@example.org"}}
    raws = [
        body(new),
        body(new),
        body(new, **other),
        body(bad, submitted_at="2999-01-01T00:00:00Z"),
        body(old),
        body(old, **other),
    ]
    async with pool.acquire() as conn, conn.transaction():
        uow = UnitOfWork(conn=conn, schema="intake", source="/clustergrants/intake")
        items = [handlers.Item(handlers.Submission(raw), f"topic/0/{n}") for n, raw in enumerate(raws)]
        outcomes = await handlers.receive_all(uow, items, "kafka")
        rows = await conn.fetch("SELECT payload FROM intake.outbox WHERE event_id = ANY($1::uuid[]) ORDER BY id", uow.event_ids)
    assert [o.status for o in outcomes] == ["received", "duplicate", "conflict", "rejected", "duplicate", "conflict"]
    published = [json.loads(bytes(r["payload"])) for r in rows]
    assert [(p.get("application_id"), p.get("conflicts_with"), p.get("source_reference")) for p in published] == [
        (new, None, None),
        (None, new, "topic/0/2"),
        (bad, None, "topic/0/3"),
        (None, old, "topic/0/5"),
    ]
    stored = await pool.fetch(
        "SELECT application_id FROM intake.applications WHERE application_id = ANY($1::text[]) ORDER BY 1", [new, old, bad]
    )
    assert [r["application_id"] for r in stored] == sorted([new, old])
    kept = await pool.fetch(
        "SELECT reason, conflicts_with FROM intake.rejections WHERE rejection_id = ANY($1::text[]) ORDER BY rejected_at, reason",
        [o.rejection_id for o in outcomes if o.rejection_id],
    )
    assert sorted((r["reason"], r["conflicts_with"]) for r in kept) == [("conflict", new), ("conflict", old), ("invalid", None)]
