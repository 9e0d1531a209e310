"""The operator CLI against a real run: history across services, dead letters, clear errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from shared.topics import Topic
from tests.e2e.conftest import Stack
from tests.kafka_tools import Collector
from tests.processes import ROOT

pytestmark = pytest.mark.e2e


def cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": stack.database_url, "KAFKA_BOOTSTRAP_SERVERS": stack.bootstrap,
           "TOPIC_PREFIX": stack.prefix, "INTAKE_URL": stack.intake_url, "INTAKE_TOKEN": stack.token, "COLUMNS": "250"}
    return subprocess.run([sys.executable, "-m", "services.cli", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120, check=False)


async def test_submit_then_history_shows_every_service(stack: Stack, samples: Path, tmp_path: Path) -> None:
    app_id = f"CLI-{uuid.uuid4().hex[:8]}"
    body = json.loads((samples / "ttc-voucher.json").read_text())
    body["application_id"] = app_id
    (tmp_path / "app.json").write_text(json.dumps(body))
    async with Collector(stack.bootstrap, stack.prefix, [Topic.NOTIFICATION_SENT]) as seen:
        submitted = cli(stack, "submit", str(tmp_path / "app.json"))
        assert submitted.returncode == 0, submitted.stdout + submitted.stderr
        assert "202 received" in submitted.stdout
        await seen.wait_for(lambda: bool(seen.bodies(Topic.NOTIFICATION_SENT, application_id=app_id)), what="notified")
    shown = cli(stack, "history", app_id)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    for service, fact in (("intake", "received via http"), ("eligibility", "decided eligible"),
                          ("budget", "committed ttc EUR"), ("notify", "email")):
        assert any(service in line and fact in line for line in shown.stdout.splitlines()), (service, shown.stdout)


def test_bad_arguments_get_a_clear_message_not_a_traceback(stack: Stack, tmp_path: Path) -> None:
    for args, expected in (
        (("history", "NO-SUCH-APPLICATION"), "no service knows"),
        (("dead-letters", "redrive", "abc"), "is not partition:offset"),
        (("calls", "close-call", "ttc.innovation-voucher", "c1"), "not a competitive scheme"),
    ):
        result = cli(stack, *args)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert expected in result.stdout and "Traceback" not in result.stdout + result.stderr
    missing = cli(stack, "submit", str(tmp_path / "missing.json"))
    assert missing.returncode == 2 and "Traceback" not in missing.stdout + missing.stderr


async def test_dead_letters_are_listed_and_can_be_redriven(stack: Stack) -> None:
    from shared.topics import topic_name
    from tests.kafka_tools import publish_raw

    marker = uuid.uuid4().hex[:8]
    await publish_raw(stack.bootstrap, topic_name(Topic.ELIGIBILITY_DECIDED, stack.prefix), f"junk-{marker}".encode(),
                      marker.encode(), [("ce_id", marker.encode()), ("ce_source", b"/t"), ("ce_specversion", b"1.0"),
                                        ("ce_type", b"org.clustergrants.eligibility.decided.v1")])
    async with Collector(stack.bootstrap, stack.prefix, [Topic.DEAD_LETTER]) as seen:
        # budget and notify both consume decisions: both park the junk.
        await seen.wait_for(lambda: sum(r.value == f"junk-{marker}".encode() for r in seen.records[Topic.DEAD_LETTER]) == 2,
                            what="two dead letters")
        record = next(r for r in seen.records[Topic.DEAD_LETTER] if r.value == f"junk-{marker}".encode())
        listed = cli(stack, "dead-letters", "list")
        assert listed.returncode == 0, listed.stdout + listed.stderr
        assert f"{record.partition}:{record.offset}" in listed.stdout
        redriven = cli(stack, "dead-letters", "redrive", f"{record.partition}:{record.offset}")
        assert redriven.returncode == 0 and "redriven: 1" in redriven.stdout, redriven.stdout + redriven.stderr
        # Still junk: the consumers park it again (and nothing else happens).
        await seen.wait_for(lambda: sum(r.value == f"junk-{marker}".encode() for r in seen.records[Topic.DEAD_LETTER]) == 4,
                            what="parked again after the redrive")
    async with httpx.AsyncClient() as client:
        assert (await client.get(f"{stack.intake_url}/healthz")).status_code == 200
