"""The small chaos run in the suite: a few hundred applications while each service is SIGKILLed once at a
random moment and restarted, on the session's Kafka and PostgreSQL (its own database and topic prefix).
Then, from the database and the topics: one decision per valid application, at most one commitment,
exactly one notification per channel (e-mail and a signed webhook), pots reconciled to the cent and
none negative, the ledger equal to the GrantCommitted less GrantReleased on the topics and to the
open-data projection, nothing
dead-lettered, no personal data in any log line. `make chaos` runs the full one
(10,000 applications, Kafka and PostgreSQL restarted too): deploy/local/chaos.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from deploy.local.chaos import Plan, run
from shared.topics import SERVICES

pytestmark = pytest.mark.e2e


async def test_small_chaos_run_keeps_every_invariant(kafka_bootstrap: str, tmp_path: Path) -> None:
    server = os.environ["DATABASE_URL"]
    plan = Plan(applications=240, kills_per_service=1, rate=30, seed=int.from_bytes(os.urandom(2), "big"), timeout_s=420)
    report = await run(kafka_bootstrap, server, plan, tmp_path / "logs")
    f = report.figures
    assert not report.violations, (report.violations, f)
    assert f["sigkills"] == dict.fromkeys(SERVICES, 1), f
    assert f["all_outcomes_seen"] and f["quiet_at_end"], f
    assert f["webhook_deliveries"]["distinct"] == f["applications"]["valid"]
    assert f["log_lines"] > 0
    # Money moved: grants committed until the spearhead and NIC pots ran dry, and the ledger is what the
    # topics say it is (checked in the run, to the cent per programme, fund and year).
    assert f["grants_committed"] > 50 and f["ledger_keys"] > 0, f
    assert f["open_data_grant_years"] > 0, f  # and equal to the ledger's, grant by grant (a violation otherwise)
    assert {"vlaio.clusters/agency", "nic/agency"} <= set(f["pots_dry"]), f
