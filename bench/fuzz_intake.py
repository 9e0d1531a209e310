"""`make fuzz`: generated payloads at the running intake, over HTTP and over Kafka.

    KAFKA_BOOTSTRAP_SERVERS=... DATABASE_URL=... python bench/fuzz_intake.py [--payloads 10000] [--seed 1]

Starts the services on a fresh database and topic prefix (bench/harness.py), runs every HTTP edge of
issue 10 once (`http_edges`: chunked and declared bodies over the limit, media types, credentials,
CloudEvents modes, duplicate keys, huge amounts, future submissions, control and bidi characters, conflicts;
each followed by a good application), then sends half the
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
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402
import httpx  # noqa: E402
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer  # noqa: E402

from bench.fuzz_payloads import (  # noqa: E402
    HOSTILE_TEXT,
    duplicate_key,
    good,
    hostile_text,
    long_number,
    oversized_amount,
    payload,
    structured_event,
    with_changes,
)
from bench.fuzz_records import record_edges  # noqa: E402
from deploy.local.kafka_users import client_options  # noqa: E402
from services.notify.domain import recipient_ref  # noqa: E402
from shared.acl import producer_of, reader_of  # noqa: E402
from shared.cloudevents import portal_headers  # noqa: E402
from shared.events import ApplicationSubmitted  # noqa: E402
from shared.topics import Topic, topic_name  # noqa: E402

FUZZ_PORTAL = "urn:clustergrants:fuzz-portal"
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


# --- HTTP edges: what a hostile portal sends besides bodies ---------------------------------------

MIB = 2**20
CHUNK = b"[" + b'"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",' * 1985 + b'"x"]'  # ~64 KiB that looks like JSON


async def raw_post(
    url: str, token: str, total: int, *, chunked: bool = True, declared: int | None = None, timeout_s: float = 30
) -> tuple[str | None, int]:
    """POST over a raw socket: `total` bytes chunked, or only headers declaring `declared` bytes; stops when
    the server answers or closes. Returns (status code or None, body bytes sent before that)."""
    host, _, port = url.removeprefix("http://").partition(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {declared}"
    writer.write(
        f"POST /v1/applications HTTP/1.1\r\nHost: intake\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\n{framing}\r\n\r\n".encode()
    )
    answer = asyncio.create_task(reader.read(65536))
    sent = 0
    deadline = time.monotonic() + timeout_s
    try:
        while chunked and sent < total and not answer.done() and time.monotonic() < deadline:
            piece = CHUNK[: total - sent]
            writer.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            await writer.drain()
            sent += len(piece)
        if chunked and not answer.done():
            writer.write(b"0\r\n\r\n")
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    head = b""
    try:
        head = await asyncio.wait_for(answer, timeout=max(1.0, deadline - time.monotonic()))
    except (TimeoutError, ConnectionError):
        answer.cancel()
    writer.close()
    return (head.split(b" ", 2)[1].decode() if head.startswith(b"HTTP/") else None), sent


def _vm_hwm_mib(pid: int | None) -> float | None:
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


async def http_edges(
    intake_url: str,
    token: str,
    database_url: str,
    run: str,
    intake_pid: int | None = None,
    big_mib: int = 64,
    ref_key: str | None = None,
) -> FuzzReport:
    """Every HTTP edge of issue 10 once, each followed by a good application that must still be received:
    chunked and declared bodies over the limit, media types, credentials, CloudEvents modes, duplicate keys,
    huge amounts and numbers, future submissions, control and bidi characters, conflicts and offsets."""
    report = FuzzReport()
    bad: list[str] = []
    outcomes: Counter[str] = Counter()
    auth = {"Authorization": f"Bearer {token}"}
    json_headers = {**auth, "Content-Type": "application/json"}
    followers = 0

    async def follow(client: httpx.AsyncClient, name: str) -> None:
        nonlocal followers
        followers += 1
        answer = await client.post(f"{intake_url}/v1/applications", content=good(f"{run}-EG{followers}"), headers=json_headers)
        if answer.status_code != 202:
            bad.append(f"{name}: the good application behind it got HTTP {answer.status_code}")

    async def expect(
        client: httpx.AsyncClient,
        name: str,
        status: int,
        error_type: str | None,
        content: bytes,
        headers: dict[str, str] | list[tuple[str, str | bytes]],
    ) -> httpx.Response | None:
        try:
            # (ignore below) httpx sends bytes values as they are
            response = await client.post(f"{intake_url}/v1/applications", content=content, headers=headers)  # type: ignore[arg-type]
        except httpx.HTTPError as error:
            bad.append(f"{name}: {type(error).__name__} (no answer)")
            return None
        outcomes[f"{name}:{response.status_code}"] += 1
        try:
            body = response.json()
        except ValueError:
            body = {}
        types = {e.get("type") for e in body.get("errors", [])} if isinstance(body, dict) else set()
        if response.status_code != status or (error_type is not None and error_type not in types):
            bad.append(f"{name}: HTTP {response.status_code} {response.text[:160]} (expected {status} {error_type or ''})")
        await follow(client, name)
        return response

    async with httpx.AsyncClient(timeout=30) as client:
        # Size: a chunked body far over the limit with a valid token, and a declared one.
        before = _vm_hwm_mib(intake_pid)
        status, sent = await raw_post(intake_url, token, big_mib * MIB)
        after = _vm_hwm_mib(intake_pid)
        outcomes[f"chunked-{big_mib}MiB:{status}"] += 1
        if status != "413":
            bad.append(f"chunked {big_mib} MiB body: HTTP {status} (expected 413)")
        if before is not None and after is not None and after - before > 32:
            bad.append(f"chunked {big_mib} MiB body: intake's peak RSS grew from {before:.0f} to {after:.0f} MiB")
        report.figures["chunked"] = {
            "mib": big_mib,
            "sent_mib_before_answer": round(sent / MIB, 1),
            "intake_vm_hwm_mib": [None if v is None else round(v, 1) for v in (before, after)],
        }
        await follow(client, "chunked body over the limit")
        status, _ = await raw_post(intake_url, token, 0, chunked=False, declared=400 * MIB, timeout_s=10)
        outcomes[f"declared-400MiB:{status}"] += 1
        if status != "413":
            bad.append(f"Content-Length of 400 MiB: HTTP {status} (expected 413 before the body)")
        await follow(client, "declared length over the limit")

        async def chunks() -> AsyncIterator[bytes]:
            raw = good(f"{run}-E-CHUNKED")
            for i in range(0, len(raw), 100):
                yield raw[i : i + 100]

        # (ignore below) an async iterator is a streamed body
        await expect(client, "small chunked body", 202, None, chunks(), json_headers)  # type: ignore[arg-type]

        # Media types.
        for media in ("text/plain", "application/x-www-form-urlencoded", "application/xml", "application/json; charset=latin-1"):
            await expect(client, f"Content-Type {media}", 415, None, good(f"{run}-E-MT"), {**auth, "Content-Type": media})
        await expect(client, "no Content-Type", 415, "media_type_unsupported", good(f"{run}-E-MT"), auth)
        await expect(
            client, "XML body", 415, None, b"<application><id>x</id></application>", {**auth, "Content-Type": "text/xml"}
        )
        await expect(
            client, "charset=utf-8", 202, None, good(f"{run}-E-UTF8"), {**auth, "Content-Type": "application/json; charset=utf-8"}
        )

        # Credentials: every bad one answered exactly like a wrong token, never 500.
        wrong = await client.post(
            f"{intake_url}/v1/applications",
            content=good(f"{run}-E-CRED"),
            headers={**json_headers, "Authorization": "Bearer wrong"},
        )
        credentials: list[tuple[str, list[tuple[str, str | bytes]]]] = [
            ("non-ASCII token", [("Authorization", "Bearer pörtal-tökén".encode())]),
            ("token with U+202E", [("Authorization", f"Bearer {token}\u202e".encode())]),
            ("wrong scheme", [("Authorization", f"Basic {token}")]),
            ("empty", [("Authorization", "")]),
            ("none", []),
            ("two Authorization headers", [("Authorization", f"Bearer {token}"), ("Authorization", f"Bearer {token}x")]),
            ("token and a suffix", [("Authorization", f"Bearer {token},other")]),
        ]
        for name, headers in credentials:
            response = await expect(
                client,
                f"credentials: {name}",
                401,
                "unauthorized",
                good(f"{run}-E-CRED"),
                [("Content-Type", "application/json"), *headers],
            )
            if response is not None and response.status_code == 401 and (response.text != wrong.text or wrong.status_code != 401):
                bad.append(f"credentials: {name}: a different answer than a wrong token's (an oracle)")

        # CloudEvents over HTTP.
        ce_json = {**auth, "Content-Type": "application/cloudevents+json"}
        await expect(client, "structured mode", 202, None, structured_event(f"{run}-E-CES"), ce_json)
        await expect(
            client,
            "structured mode, specversion 0.3",
            422,
            "cloudevents_specversion",
            structured_event(f"{run}-E-CES3", specversion="0.3"),
            ce_json,
        )
        binary = {
            **json_headers,
            "ce-specversion": "1.0",
            "ce-id": f"{run}-b1",
            "ce-source": "/portals/fuzz",
            "ce-type": "org.clustergrants.application.submitted.v1",
            "ce-time": "2024-01-01T09:00:00Z",
        }
        await expect(client, "binary mode", 202, None, good(f"{run}-E-CEB"), binary)
        await expect(
            client, "binary mode, bad time", 422, "cloudevents_time", good(f"{run}-E-CEB2"), {**binary, "ce-time": "2024-13-01"}
        )

        # Bodies: duplicate keys, huge numbers, future, control and bidi characters.
        await expect(client, "duplicate keys", 422, "json_duplicate_key", duplicate_key(good(f"{run}-E-DUP")), json_headers)
        await expect(client, "amount 10^30", 422, "money_too_large", oversized_amount(f"{run}-E-BIG"), json_headers)
        future = json.dumps(with_changes(f"{run}-E-FUT", submitted_at="2999-01-01T00:00:00Z")).encode()
        await expect(client, "submitted_at in 2999", 422, "submitted_at_in_future", future, json_headers)
        await expect(client, "a 5000-digit number", 422, "json_invalid", long_number(f"{run}-E-NUM"), json_headers)
        for i, text in enumerate(HOSTILE_TEXT):
            kind = (
                "string_bidi_control"
                if any("\u202a" <= c <= "\u202e" or "\u2066" <= c <= "\u2069" for c in text)
                else "string_control_character"
            )
            await expect(client, f"hostile text {text!r}", 422, kind, hostile_text(f"{run}-E-TXT{i}", text), json_headers)

        # Conflicts and offsets.
        original = with_changes(f"{run}-E-CONFLICT")
        await expect(client, "conflict: the original", 202, None, json.dumps(original).encode(), json_headers)
        conflicting = {**original, "contact": {"name": "Conflicting Body", "email": f"conflict.{run.lower()}@example.org"}}
        response = await expect(
            client,
            "conflict: another body, same id",
            409,
            "application_id_conflict",
            json.dumps(conflicting).encode(),
            json_headers,
        )
        if response is not None and response.status_code == 409:
            answer = response.json()
            if answer.get("application_id") is not None or answer.get("conflicts_with") != original["application_id"]:
                bad.append(f"conflict: the answer names the original as its application: {response.text[:200]}")
        control = with_changes(f"{run}-E-CONTROL")
        control.pop("submitted_at")
        control["contact"] = {"name": "Control Person", "email": f"control.{run.lower()}@example.org"}
        await expect(client, "invalid with a contact (control)", 422, "missing", json.dumps(control).encode(), json_headers)
        shifted = dict(original)
        instant = datetime.fromisoformat(str(original["submitted_at"]))
        shifted["submitted_at"] = instant.astimezone(timezone(timedelta(hours=-5))).isoformat()
        response = await expect(client, "the same instant, another offset", 202, None, json.dumps(shifted).encode(), json_headers)
        if response is not None and response.status_code == 202 and response.json().get("status") != "duplicate":
            bad.append(f"the same instant with another offset: {response.text[:200]} (expected duplicate)")

    # The conflicting resubmission: stored as a rejection of its own, never e-mailed to the address in it.
    conn = await asyncpg.connect(database_url)
    try:
        original_id = original["application_id"]
        as_original = await conn.fetchval("SELECT count(*) FROM intake.rejections WHERE application_id = $1", original_id)
        conflicts = await conn.fetchval("SELECT count(*) FROM intake.rejections WHERE conflicts_with = $1", original_id)
        if as_original or conflicts != 1:
            bad.append(f"conflict: {as_original} rejection(s) under the original's id, {conflicts} with conflicts_with")
        if ref_key is not None:
            # notify names recipients by recipient_ref only (the address leaves its table once sent).
            emails = "SELECT count(*) FROM notify.notifications WHERE channel = 'email' AND recipient_ref = $1"
            control_ref = recipient_ref(control["contact"]["email"], ref_key.encode())
            conflict_ref = recipient_ref(conflicting["contact"]["email"], ref_key.encode())
            deadline = time.monotonic() + 60
            emailed_control = 0
            while time.monotonic() < deadline and not emailed_control:
                emailed_control = await conn.fetchval(emails, control_ref)
                await asyncio.sleep(0.5)
            await asyncio.sleep(2)  # notify consumed the rejected topic at least up to the control: a moment more
            emailed_conflict = await conn.fetchval(emails, conflict_ref)
            report.figures["emails"] = {"control": emailed_control, "conflicting_body": emailed_conflict}
            if not emailed_control:
                bad.append("notify scheduled no e-mail for the control rejection within 60 s: the conflict check proves nothing")
            if emailed_conflict:
                bad.append(f"notify scheduled {emailed_conflict} e-mail(s) to the address in the conflicting body")
    finally:
        await conn.close()
    report.figures["outcomes"] = dict(sorted(outcomes.items()))
    report.figures["good_followers"] = followers
    report.violations += bad
    return report


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
    intake_pid: int | None = None,
    edges: bool = True,
    ref_key: str | None = None,
) -> FuzzReport:
    """`alive()`: names of services that exited (checked at the end); None to skip. `known_bugs`: include
    deeply nested JSON and NUL characters (known intake bugs: HTTP 500 / dead letter) among the payloads.
    `edges`: also run `http_edges` (`intake_pid`: to check the intake's peak memory under a huge body)."""
    report = FuzzReport()
    f = report.figures
    rng = random.Random(seed)
    run = f"FZ{seed:x}{rng.randrange(16**4):04x}"
    if edges:
        edge_report = await http_edges(intake_url, token, database_url, run, intake_pid, ref_key=ref_key)
        f["http_edges"] = edge_report.figures
        report.violations += [f"HTTP edge: {v}" for v in edge_report.violations]
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
            # A portal's envelope around fuzzed data: the data is what is fuzzed here (whole records: fuzz_records.py).
            headers = portal_headers(ApplicationSubmitted, source=FUZZ_PORTAL, event_id=f"{run}-K{i}")
            futures.append((app_id, await producer.send(topic, raw, key=key, headers=headers)))
            follower_headers = portal_headers(ApplicationSubmitted, source=FUZZ_PORTAL, event_id=f"{run}-KG{i}")
            futures.append(
                (f"{run}-KG{i}", await producer.send(topic, good(f"{run}-KG{i}", i), key=key, headers=follower_headers))
            )
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
        wanted = [f"{run}-K{i}" for i in range(len(kafka_cases))] + [f"{run}-KG{i}" for i in range(len(kafka_cases))]
        deadline = time.monotonic() + timeout_s
        consumed, last, still_since = 0, -1, time.monotonic()
        while time.monotonic() < deadline:
            consumed = await conn.fetchval(
                "SELECT count(*) FROM intake.inbox WHERE source = $1 AND event_id = ANY($2::text[])", FUZZ_PORTAL, wanted
            )
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
        claimed = {
            r[0]
            for r in await conn.fetch(
                "SELECT event_id FROM intake.inbox WHERE source = $1 AND event_id = ANY($2::text[])", FUZZ_PORTAL, wanted
            )
        }
        neither = [a for i, (a, _) in enumerate(kafka_cases) if f"{run}-K{i}" not in claimed]
        unspecific = [
            p for p, errors in rejected.items() if not _specific(errors if isinstance(errors, list) else json.loads(errors))
        ]
        missing_good = [g for g in good_ids if g not in received]
        types: Counter[str] = Counter()
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

            report = await fuzz(
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
                intake_pid=stack.processes.procs["intake"].pid,
                ref_key=stack.processes.env["NOTIFY_RECIPIENT_REF_KEY"],
            )
            # Whole hostile records (headers, keys, tombstones, modes) after the data fuzz: its dead-letter
            # check above counts no parked record of these.
            records = await record_edges(
                bootstrap, stack.prefix, stack.database_url, f"FR{args.seed:x}", timeout_s=args.timeout, alive=exited
            )
            report.figures["records"] = records.figures
            report.violations += [f"records: {v}" for v in records.violations]
            return report


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
    from bench.harness import run_stoppable

    report = run_stoppable(standalone(args))
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
