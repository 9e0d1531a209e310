"""A competitive call end to end: eligible S3 applications, assessors' scores over HTTP and Kafka,
the call closed once by the operator command, the selection published as CallClosed."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from services.eligibility.competition import S3_CRITERIA
from shared.cloudevents import portal_headers
from shared.events import AssessmentSubmitted
from shared.topics import Topic, topic_name
from tests.e2e.conftest import Stack
from tests.kafka_tools import Collector, publish_raw
from tests.processes import ROOT

pytestmark = pytest.mark.e2e


def assessment(app_id: str, call_id: str, assessor: str, score: int) -> dict[str, Any]:
    return {
        "application_id": app_id,
        "assessment_id": f"{app_id}-{assessor}",
        "call_id": call_id,
        "assessor_id": assessor,
        "scores": {c: score for c in S3_CRITERIA},
        "submitted_at": datetime.now(UTC).isoformat(),
    }


def close_call(stack: Stack, call_id: str, cap: int) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": stack.database_url, "COLUMNS": "200", "CLUSTERGRANTS_OPERATOR": "e2e-officer"}
    return subprocess.run(
        [sys.executable, "-m", "services.eligibility.cli", "close-call", "s3.platform", call_id, "--cap", str(cap), "--yes"],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_a_call_ranks_by_scores_breaks_ties_by_time_and_selects_the_cap(stack: Stack, samples: Path) -> None:
    call_id = f"s3-{uuid.uuid4().hex[:6]}"
    base = json.loads((samples / "s3-platform.json").read_text())
    ids = [f"S3-{call_id}-{n}" for n in range(4)]
    headers = {"Authorization": f"Bearer {stack.token}"}
    async with Collector(stack.bootstrap, stack.prefix, [Topic.ELIGIBILITY_DECIDED, Topic.CALL_CLOSED]) as seen:
        async with httpx.AsyncClient(timeout=10) as client:
            for n, app_id in enumerate(ids):
                body = {**base, "application_id": app_id, "call_id": call_id, "submitted_at": f"2018-05-2{n}T10:00:00+02:00"}
                assert (await client.post(f"{stack.intake_url}/v1/applications", json=body, headers=headers)).status_code == 202
            await seen.wait_for(
                lambda: all(seen.bodies(Topic.ELIGIBILITY_DECIDED, application_id=i) for i in ids), what="four decisions"
            )
            assert all(seen.bodies(Topic.ELIGIBILITY_DECIDED, application_id=i)[0]["outcome"] == "eligible" for i in ids)
            # Scores: ids[2] best; ids[0] and ids[1] tie (ids[0] submitted earlier); ids[3] has no scores.
            for app_id, score in ((ids[0], 5), (ids[1], 5), (ids[2], 9)):
                response = await client.post(
                    f"{stack.intake_url}/v1/assessments", json=assessment(app_id, call_id, "assessor-a", score), headers=headers
                )
                assert response.status_code == 202, response.text
            bad = await client.post(
                f"{stack.intake_url}/v1/assessments",
                json={**assessment(ids[0], call_id, "assessor-b", 1), "scores": {"x": 1.5}},
                headers=headers,
            )
            assert bad.status_code == 422
        # A second assessor for ids[1], through Kafka: its mean stays 5, so the tie with ids[0] remains.
        second = AssessmentSubmitted.model_validate(assessment(ids[1], call_id, "assessor-b", 5))
        await publish_raw(
            stack.bootstrap,
            topic_name(Topic.ASSESSMENT_SUBMITTED, stack.prefix),
            second.model_dump_json().encode(),
            ids[1].encode(),
            portal_headers(AssessmentSubmitted, source="urn:clustergrants:test-assessors", subject=ids[1]),
        )
        conn = await asyncpg.connect(stack.database_url)
        try:
            for _ in range(300):  # the assessments travel intake -> Kafka -> eligibility
                count = await conn.fetchval("SELECT count(*) FROM eligibility.assessments WHERE call_id = $1", call_id)
                if count == 4:
                    break
                await asyncio.sleep(0.1)
        finally:
            await conn.close()
        assert count == 4

        closed = close_call(stack, call_id, 2)
        assert closed.returncode == 0, closed.stdout + closed.stderr
        again = close_call(stack, call_id, 3)  # closing again changes nothing
        assert "closed before" in again.stdout
        await seen.wait_for(lambda: bool(seen.bodies(Topic.CALL_CLOSED, call_id=call_id)), what="CallClosed")
        await asyncio.sleep(1)
        events = seen.bodies(Topic.CALL_CLOSED, call_id=call_id)
    assert len(events) == 1
    ranking = events[0]["ranking"]
    assert [r["application_id"] for r in ranking] == [ids[2], ids[0], ids[1]]
    assert [r["selected"] for r in ranking] == [True, True, False]
    assert ranking[0]["total_score"] == "63" and ranking[1]["total_score"] == "35"
    assert events[0]["unscored"] == [ids[3]] and events[0]["cap"] == 2


def test_closing_needs_a_competitive_scheme_and_says_why(stack: Stack) -> None:
    env = {**os.environ, "DATABASE_URL": stack.database_url, "CLUSTERGRANTS_OPERATOR": "e2e-officer"}
    result = subprocess.run(
        [sys.executable, "-m", "services.eligibility.cli", "close-call", "ttc.innovation-voucher", "x", "--yes"],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "not a competitive scheme" in result.stderr and "Traceback" not in result.stdout + result.stderr
    assert result.stdout == "" and len(result.stderr.splitlines()) == 1
