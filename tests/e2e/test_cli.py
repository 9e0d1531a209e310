"""The operator CLI against a real run: history across services with amounts, dead letters redriven
and audited, ledger views and exports, clear one-line errors on stderr."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from shared.acl import CONSUMES
from shared.topics import Topic
from tests.e2e.conftest import Stack
from tests.kafka_tools import Collector
from tests.processes import ROOT

pytestmark = pytest.mark.e2e


def cli(stack: Stack, *args: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        **extra_env,
        "DATABASE_URL": stack.database_url,
        "KAFKA_BOOTSTRAP_SERVERS": stack.bootstrap,
        "TOPIC_PREFIX": stack.prefix,
        "INTAKE_URL": stack.intake_url,
        "INTAKE_TOKEN": stack.token,
        "CLUSTERGRANTS_OPERATOR": "e2e-operator",
        "COLUMNS": "250",
    }
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *args],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_submit_then_history_shows_every_service(stack: Stack, samples: Path, tmp_path: Path) -> None:
    app_id = f"CLI-{uuid.uuid4().hex[:8]}"
    body = json.loads((samples / "ttc-voucher.json").read_text())
    body["application_id"] = app_id
    # A company of its own: each company gets one voucher across all its applications (issue 11), and
    # the sample's company applies in other tests of the session too.
    body["applicant"]["organisation_number"] = f"Amtsgericht Aachen HRB {30_000 + int(app_id[4:], 16) % 60_000}"
    (tmp_path / "app.json").write_text(json.dumps(body))
    async with Collector(stack.bootstrap, stack.prefix, [Topic.NOTIFICATION_SENT]) as seen:
        submitted = cli(stack, "submit", str(tmp_path / "app.json"))
        assert submitted.returncode == 0, submitted.stdout + submitted.stderr
        assert "202 received" in submitted.stdout
        await seen.wait_for(lambda: bool(seen.bodies(Topic.NOTIFICATION_SENT, application_id=app_id)), what="notified")
    shown = cli(stack, "history", app_id)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    for service, fact in (
        ("intake", "received via http"),
        ("eligibility", "decided eligible"),
        ("budget", "committed ttc EUR 5,000.00"),
        ("notify", "email"),
    ):
        assert any(service in line and fact in line for line in shown.stdout.splitlines()), (service, shown.stdout)
    as_json = cli(stack, "history", app_id, "--json")
    assert as_json.returncode == 0, as_json.stderr
    committed = [r for r in json.loads(as_json.stdout) if r["service"] == "budget"]
    assert committed[0]["amount"] == {"amount_minor": 500000, "currency": "EUR"}


def test_bad_arguments_get_a_clear_message_not_a_traceback(stack: Stack, tmp_path: Path) -> None:
    for args, expected in (
        (("history", "NO-SUCH-APPLICATION"), "no service knows"),
        (("dead-letters", "redrive", "abc"), "is not partition:offset"),
        (("calls", "close-call", "ttc.innovation-voucher", "c1", "--yes"), "not a competitive scheme"),
    ):
        result = cli(stack, *args)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert result.stdout == "" and len(result.stderr.splitlines()) == 1, (args, result.stderr)
        assert expected in result.stderr and "Traceback" not in result.stdout + result.stderr
    typo = cli(stack, "budget", "open-year", "ttc", "1800", "--yes", BUDGET_POTS_FILE=str(ROOT / "deploy/local/budget-pots.yaml"))
    assert typo.returncode == 2 and "1800 lies outside the period of ttc, 2012-2015" in typo.stderr, typo.stderr
    missing = cli(stack, "submit", str(tmp_path / "missing.json"))
    assert missing.returncode == 2 and "does not exist" in missing.stderr and len(missing.stderr.splitlines()) == 1


async def test_dead_letters_are_listed_and_redriven_by_the_service_that_parked_them(stack: Stack) -> None:
    from shared.topics import topic_name
    from tests.kafka_tools import publish_raw

    marker = uuid.uuid4().hex[:8]
    await publish_raw(
        stack.bootstrap,
        topic_name(Topic.ELIGIBILITY_DECIDED, stack.prefix),
        f"junk-{marker}".encode(),
        marker.encode(),
        [
            ("ce_id", marker.encode()),
            ("ce_source", b"/clustergrants/eligibility"),
            ("ce_specversion", b"1.0"),
            ("ce_type", b"org.clustergrants.eligibility.decided.v1"),
        ],
    )
    # Every service consuming decisions (budget, notify, intake's status read model) parks the junk.
    parkers = sum(Topic.ELIGIBILITY_DECIDED in topics for topics in CONSUMES.values())
    async with Collector(stack.bootstrap, stack.prefix, [Topic.DEAD_LETTER]) as seen:
        await seen.wait_for(
            lambda: sum(r.value == f"junk-{marker}".encode() for r in seen.records[Topic.DEAD_LETTER]) == parkers,
            what=f"{parkers} dead letters",
        )
        record = next(r for r in seen.records[Topic.DEAD_LETTER] if r.value == f"junk-{marker}".encode())
        listed = cli(stack, "dead-letters", "list")
        assert listed.returncode == 0, listed.stdout + listed.stderr
        assert f"{record.partition}:{record.offset}" in listed.stdout
        dead_id = f"{record.partition}:{record.offset}"
        unconfirmed = cli(stack, "dead-letters", "redrive", dead_id)
        assert unconfirmed.returncode == 2 and "without confirmation" in unconfirmed.stderr
        # Nothing is republished (the operator may write no topic): the parking service re-reads the copy,
        # runs it through its contract again, and, the data being junk still, parks it again.
        redriven = cli(stack, "dead-letters", "redrive", dead_id, "--yes", "--json")
        assert redriven.returncode == 0, redriven.stdout + redriven.stderr
        answer = json.loads(redriven.stdout)
        assert answer["outcomes"] == {dead_id: "refused by the contract again: data_invalid"}, answer
        parked_by = dict(record.headers)["cg_dlt_group"].decode().removeprefix("clustergrants.")
        trail = json.loads(cli(stack, "audit", "--command", "dead-letters redrive", "--json").stdout)
        mine = [r for r in trail if r["arguments"]["ids"] == [dead_id]]
        assert [(r["service"], r["operator"], r["outcome"]) for r in mine] == [(parked_by, "e2e-operator", "requested")]
        await seen.wait_for(
            lambda: sum(r.value == f"junk-{marker}".encode() for r in seen.records[Topic.DEAD_LETTER]) == parkers + 1,
            what="parked again after the redrive",
        )
    async with httpx.AsyncClient() as client:
        assert (await client.get(f"{stack.intake_url}/healthz")).status_code == 200


def test_ledger_views_and_open_data_exports_of_a_live_run(stack: Stack, tmp_path: Path) -> None:
    # Runs after the submit test above: at least one TTC voucher is committed.
    balances = cli(stack, "budget", "balances", "--programme", "ttc")
    assert balances.returncode == 0, balances.stdout + balances.stderr
    assert "ttc/erdf" in balances.stdout
    as_json = cli(stack, "budget", "balances", "--programme", "ttc", "--json")
    assert {r["pot_id"] for r in json.loads(as_json.stdout)} >= {"ttc/erdf", "ttc/co-financing"}
    reconciled = cli(stack, "budget", "reconcile")
    assert reconciled.returncode == 0 and "reconciliation ok" in reconciled.stdout, reconciled.stdout + reconciled.stderr

    opendata = str(ROOT / "deploy" / "local" / "opendata.yaml")
    refused = cli(stack, "export", "360giving", "--output", str(tmp_path / "x.json"))
    assert refused.returncode == 2 and "Traceback" not in refused.stdout + refused.stderr
    # The exports read the open-data service's projection of the topics: it follows the ledger within
    # moments (a bounded wait, not a sleep).
    deadline = time.monotonic() + 60
    while True:
        package = cli(
            stack, "export", "360giving", "--format", "json", "--output", str(tmp_path / "grants.json"), OPENDATA_FILE=opendata
        )
        grants = json.loads((tmp_path / "grants.json").read_text())["grants"] if package.returncode == 0 else []
        if any(g["currency"] == "EUR" and g["amountAwarded"] == 5000 for g in grants) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert package.returncode == 0, package.stdout + package.stderr
    assert any(g["currency"] == "EUR" and g["amountAwarded"] == 5000 for g in grants)
    operations = cli(stack, "export", "eu-operations", "--output", str(tmp_path / "operations.csv"), OPENDATA_FILE=opendata)
    assert operations.returncode == 0, operations.stdout + operations.stderr
    rows = (tmp_path / "operations.csv").read_text().splitlines()
    assert rows[0].startswith("Operation code") and any("ERDF" in row and "50.00" in row for row in rows[1:])
    assert "@" not in (tmp_path / "grants.json").read_text() + "\n".join(rows)
