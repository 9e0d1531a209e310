"""Case handling over the real pipeline: a referred application decided by a case handler's finding,
revisions downstream, re-decisions, S3's own selection, a portal's status read."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from shared.topics import Topic
from tests.e2e.conftest import Stack
from tests.e2e.test_cli import cli
from tests.e2e.test_pipeline import application, post
from tests.kafka_tools import Collector, headers_of
from tests.smtp import Inbox

pytestmark = pytest.mark.e2e

SEEN = [Topic.ELIGIBILITY_DECIDED, Topic.GRANT_COMMITTED, Topic.GRANT_REFUSED, Topic.NOTIFICATION_SENT, Topic.AUDIT_RECORDED]


def voucher_without_sme(samples: Path, app_id: str) -> dict[str, Any]:
    body = application(samples, "ttc-voucher.json", app_id)
    body["applicant"]["is_sme"] = None  # the rules cannot tell: a case handler decides
    return body


async def test_referral_finding_eligible_revision_one_commitment_one_email(
    stack: Stack, samples: Path, smtp_inbox: tuple[Inbox, int]
) -> None:
    app_id = f"CASE-{uuid.uuid4().hex[:8]}"
    async with Collector(stack.bootstrap, stack.prefix, SEEN) as seen:
        assert (await post(stack, voucher_without_sme(samples, app_id))).status_code == 202
        await seen.wait_for(lambda: bool(seen.bodies(Topic.ELIGIBILITY_DECIDED, application_id=app_id)), what="decided")
        [first] = seen.bodies(Topic.ELIGIBILITY_DECIDED, application_id=app_id)
        assert (first["outcome"], first["revision"]) == ("needs_review", 1)

        listed = cli(stack, "review", "list", "--scheme", "ttc.innovation-voucher", "--json")
        assert listed.returncode == 0, listed.stderr
        [mine] = [p for p in json.loads(listed.stdout)["pending"] if p["application_id"] == app_id]
        assert [c["criterion"] for c in mine["criteria"]] == ["applicant_sme"]

        refused = cli(stack, "review", "record", app_id, "nonsense", "passed", "--reason", "r", "--document", "D-1",
                      "--officer", "k-1042", "--yes")  # fmt: skip
        assert refused.returncode == 2 and "no criterion 'nonsense'" in refused.stderr

        recorded = cli(stack, "review", "record", app_id, "applicant_sme", "passed", "--reason", "SME declaration seen",
                       "--document", "DMS-2026-00421", "--officer", "k-1042", "--based-on-revision", "1", "--yes",
                       "--json")  # fmt: skip
        assert recorded.returncode == 0, recorded.stderr
        assert json.loads(recorded.stdout)["changes"]["outcome_after"] == "eligible"

        await seen.wait_for(lambda: bool(seen.bodies(Topic.GRANT_COMMITTED, application_id=app_id)), what="committed")
        await seen.wait_for(
            lambda: any(n["source_event_type"].startswith("org.clustergrants.grant.committed")
                        for n in seen.bodies(Topic.NOTIFICATION_SENT, application_id=app_id) if n["channel"] == "email"),
            what="commitment e-mail",
        )  # fmt: skip
        decided = seen.bodies(Topic.ELIGIBILITY_DECIDED, application_id=app_id)
        [second] = [d for d in decided if d["revision"] == 2]
        first_id = headers_of(seen.matching(Topic.ELIGIBILITY_DECIDED, application_id=app_id)[0])["ce_id"]
        assert (second["outcome"], second["supersedes"], second["decided_by"]) == ("eligible", first_id, "officer:k-1042")
        assert {c["criterion"]: c["decided_by"] for c in second["criteria"]}["applicant_sme"] == "officer:k-1042"
        assert len(seen.bodies(Topic.GRANT_COMMITTED, application_id=app_id)) == 1
        audits = [a for a in seen.bodies(Topic.AUDIT_RECORDED) if a["command"] == "review record"]
        assert any(a["changes"].get("application_id") == app_id for a in audits)

        # The same finding again is a new finding (a correction): revision 3, still eligible, no second grant.
        again = cli(stack, "review", "record", app_id, "applicant_sme", "passed", "--reason", "confirmed", "--document",
                    "DMS-2026-00422", "--officer", "k-7", "--based-on-revision", "1", "--yes")  # fmt: skip
        assert again.returncode == 2 and "revision 2" in again.stderr  # stale: someone revised it since
    history = cli(stack, "review", "history", app_id, "--json")
    assert history.returncode == 0, history.stderr
    shown = json.loads(history.stdout)
    assert [r["revision"] for r in shown["revisions"]] == [1, 2]
    assert [f["officer"] for f in shown["findings"]] == ["k-1042"]
    mails = [n for n in seen.bodies(Topic.NOTIFICATION_SENT, application_id=app_id) if n["channel"] == "email"]
    assert sorted(n["template"] for n in mails) == ["eligibility.needs_review", "grant.committed"]
