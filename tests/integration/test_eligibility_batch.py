"""Eligibility decides a consumed batch with one statement for the applications and one for the
decisions: the same decisions as one at a time, one decision per application however often it comes
(twice in the batch, or decided in an earlier batch), and only the decisions recorded are published."""

from __future__ import annotations

import json
import secrets
import uuid
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

from services.eligibility.handlers import decide, on_application_received, on_applications_received
from services.eligibility.parameters import ParameterStore
from services.eligibility.repository import EligibilityRepository
from services.eligibility.schemes.s3_financing.selection import OwnSelection
from shared.db import Connection
from shared.delivery import UnitOfWork
from shared.events import Application, ApplicationReceived

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ("ttc-voucher.json", "vlaio-spearhead-2019.json", "nic-arena.json", "s3-financing-vinnvaxt.json")
PARAMETERS = ParameterStore.load(operator_file=str(ROOT / "deploy/local/operator-parameters.yaml"))


def received(sample: str, application_id: str) -> ApplicationReceived:
    body = json.loads((ROOT / "deploy/local/samples" / sample).read_text(encoding="utf-8"))
    application = Application.model_validate({**body, "application_id": application_id})
    return ApplicationReceived(
        application_id=application_id, received_at=datetime.now(UTC), channel="kafka", application=application
    )


async def decided_in_outbox(conn: Connection, ids: list[str]) -> list[str]:
    rows = await conn.fetch("SELECT payload FROM eligibility.outbox ORDER BY id")
    found = [json.loads(bytes(r["payload"])).get("application_id") for r in rows]  # dead letters have none
    return [a for a in found if a in ids]


async def test_a_batch_is_decided_like_one_at_a_time_and_each_application_once(pool: asyncpg.Pool) -> None:
    run = secrets.token_hex(3).upper()
    ids = [f"BATCH-{run}-{n}" for n in range(len(SAMPLES))]
    events = [received(sample, app) for sample, app in zip(SAMPLES, ids, strict=True)]
    earlier = received(SAMPLES[0], f"BATCH-{run}-EARLIER")
    async with pool.acquire() as conn, conn.transaction():
        uow = UnitOfWork(conn, "eligibility", "/clustergrants/eligibility")  # repo_of binds the repositories
        assert await on_application_received(uow, earlier, PARAMETERS) is not None
    # The batch: four new applications, the second again right after it, and the earlier one again.
    batch = [events[0], events[1], events[1], events[2], events[3], earlier]
    async with pool.acquire() as conn, conn.transaction():
        uow = UnitOfWork(conn, "eligibility", "/clustergrants/eligibility")  # repo_of binds the repositories
        outcomes = await on_applications_received(uow, [(e, None) for e in batch], PARAMETERS)
    expected = [decide(e, PARAMETERS).outcome for e in events]
    assert outcomes == [expected[0], expected[1], None, expected[2], expected[3], None]
    async with pool.acquire() as conn:
        assert await decided_in_outbox(conn, [*ids, earlier.application_id]) == [earlier.application_id, *ids]
        rows = await conn.fetch(
            """SELECT d.application_id, d.outcome, d.revision, d.event_id, count(r.*) AS revisions
               FROM eligibility.decisions d JOIN eligibility.decision_revisions r USING (application_id)
               WHERE d.application_id = ANY($1::text[]) GROUP BY 1, 2, 3, 4 ORDER BY 1""",
            ids,
        )
        assert [(r["application_id"], r["outcome"], r["revision"], r["revisions"]) for r in rows] == sorted(
            (app, outcome, 1, 1) for app, outcome in zip(ids, expected, strict=True)
        )
        assert all(uuid.UUID(r["event_id"]) for r in rows)
        kept = await conn.fetchval("SELECT count(*) FROM eligibility.applications WHERE application_id = ANY($1::text[])", ids)
        assert kept == len(ids)


async def test_own_selection_reads_the_schemes_closed_calls_selected_and_outside_in_one_snapshot(pool: asyncpg.Pool) -> None:
    """What S3 step 2 is checked against: the scheme's closed calls, the beneficiaries their rankings
    selected (not those ranked but not selected), the ones recorded as selected outside the project;
    nothing of another scheme."""
    run = secrets.token_hex(3).upper()
    scheme, other = f"test-{run}.platform", f"test-{run}.other"
    picked, passed = received(SAMPLES[0], f"OWN-{run}-1"), received(SAMPLES[2], f"OWN-{run}-2")
    async with pool.acquire() as conn, conn.transaction():
        uow = UnitOfWork(conn, "eligibility", "/clustergrants/eligibility")
        await on_applications_received(uow, [(picked, None), (passed, None)], PARAMETERS)
        ranking = [
            {"application_id": picked.application_id, "selected": True},
            {"application_id": passed.application_id, "selected": False},
        ]
        calls = [
            (f"B-{run}", scheme, {"ranking": ranking}),
            (f"A-{run}", scheme, {"ranking": []}),
            (f"C-{run}", other, {"ranking": [{"application_id": passed.application_id, "selected": True}]}),
        ]
        for call_id, of, result in calls:
            await conn.execute(
                "INSERT INTO eligibility.calls (call_id, scheme, closed_at, result) VALUES ($1, $2, now(), $3)",
                call_id,
                of,
                result,
            )
        repo = EligibilityRepository(conn)
        assert await repo.record_outside_selection(scheme, "SE-ORG-OUTSIDE", "officer", "reason", "ref-1")
        assert await repo.record_outside_selection(other, "SE-ORG-ELSEWHERE", "officer", "reason", "ref-2")
        own = await repo.own_selection(scheme)
        nothing = await repo.own_selection(f"test-{run}.none")
    beneficiary = decide(picked, PARAMETERS).beneficiary_id
    assert beneficiary is not None
    assert decide(passed, PARAMETERS).beneficiary_id not in (None, beneficiary)
    assert own == OwnSelection(
        calls_closed=(f"A-{run}", f"B-{run}"),
        selected=frozenset({beneficiary}),
        outside=frozenset({"SE-ORG-OUTSIDE"}),
    )
    assert nothing == OwnSelection()
