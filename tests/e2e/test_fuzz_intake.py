"""Fuzzed input at the running services, over HTTP and Kafka (bench/fuzz_intake.py runs 10,000 of them:
`make fuzz`): every payload is a specific rejection or a valid application, a good application published
right behind each bad one is still processed, nothing is dead-lettered, no service exits.

The services run on their own database and topics (not the session's `stack`): the fuzz's valid
applications would otherwise draw down the pots the other e2e tests commit grants against."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator

import httpx
import pytest

from bench.fuzz_intake import fuzz, http_edges
from bench.fuzz_payloads import good
from bench.fuzz_records import record_edges
from bench.harness import Pipeline, pipeline

pytestmark = pytest.mark.e2e

TOKEN = "fuzz-token"


@pytest.fixture(scope="module")
async def services(kafka_bootstrap: str, run_id: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Pipeline]:
    async with pipeline(
        kafka_bootstrap,
        os.environ["DATABASE_URL"],
        tmp_path_factory.mktemp("fuzz-logs"),
        name=f"cg_fuzz_{run_id}",
        INTAKE_API_TOKENS=TOKEN,
    ) as stack:
        yield stack


async def test_fuzzed_payloads_over_http_and_kafka(services: Pipeline) -> None:
    def exited() -> list[str]:
        return [name for name, proc in services.processes.procs.items() if proc.poll() is not None]

    seed = int.from_bytes(os.urandom(2), "big")
    # Includes deeply nested JSON and NUL characters: once HTTP 500s and dead letters, now rejections.
    report = await fuzz(
        services.intake_url,
        TOKEN,
        services.bootstrap,
        services.prefix,
        services.database_url,
        payloads=400,
        seed=seed,
        alive=exited,
        timeout_s=180,
        known_bugs=True,
        edges=False,  # test_every_http_edge_of_issue_10 below
    )
    assert not report.violations, (seed, report.violations, report.figures)
    assert report.figures["good_followers"]["received"] == 400
    assert report.figures["kafka"]["rejected"] > 0


async def test_a_nul_character_is_a_specific_rejection(services: Pipeline) -> None:
    body = json.loads(good(f"E2E-NUL-{os.getpid()}"))
    body["applicant"]["organisation_name"] = "Demo\u0000 Cluster"
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(
            f"{services.intake_url}/v1/applications",
            content=json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        )
    assert response.status_code == 422, response.text


async def test_every_http_edge_of_issue_10(services: Pipeline) -> None:
    """Each attack of issue 10's "Intake edges" once, each followed by a good application: a 64 MiB chunked
    body (413, intake's peak RSS does not grow), a 400 MiB Content-Length, text/plain, form and XML bodies,
    a non-ASCII token, two Authorization headers, duplicate keys, an amount of 10^30, a submitted_at in 2999,
    CR/LF and U+202E in names, a conflicting resubmission (409, not e-mailed, not the original's fate), the
    same instant with another offset (a duplicate), and CloudEvents in both HTTP modes."""
    run = f"EDGE{os.getpid()}{int.from_bytes(os.urandom(2), 'big'):x}"
    report = await http_edges(
        services.intake_url,
        TOKEN,
        services.database_url,
        run,
        intake_pid=services.processes.procs["intake"].pid,
        ref_key=services.processes.env["NOTIFY_RECIPIENT_REF_KEY"],
    )
    assert not report.violations, (report.violations, report.figures)
    assert report.figures["good_followers"] >= 30
    assert report.figures["emails"] == {"control": 1, "conflicting_body": 0}


async def test_hostile_records_beside_good_ones_on_the_submitted_topic(services: Pipeline) -> None:
    """Odd headers, keys, tombstones, modes and producers in one burst with good applications: each odd
    record is received, rejected or parked as its contract says, every good one gets through, and
    intake's offsets reach the end of the topic (nothing wedged, nothing skipped unseen)."""

    def exited() -> list[str]:
        return [name for name, proc in services.processes.procs.items() if proc.poll() is not None]

    report = await record_edges(
        services.bootstrap, services.prefix, services.database_url, f"RE{os.getpid():x}", timeout_s=120, alive=exited
    )
    assert not report.violations, (report.violations, report.figures)
    assert report.figures["good_followers"]["received"] == report.figures["attacks"]
