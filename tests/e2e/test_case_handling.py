"""Case handling over the real pipeline: a referred application decided by a case handler's finding,
revisions downstream, re-decisions, S3's own selection, a portal's status read."""

from __future__ import annotations

import json
import uuid
from datetime import date
from pathlib import Path

import pytest
import yaml

from shared.topics import Topic
from tests.e2e.conftest import LOCAL, Stack
from tests.e2e.test_cli import cli
from tests.e2e.test_pipeline import application, post
from tests.kafka_tools import Collector, headers_of
from tests.smtp import Inbox

pytestmark = pytest.mark.e2e

SEEN = [Topic.ELIGIBILITY_DECIDED, Topic.GRANT_COMMITTED, Topic.GRANT_REFUSED, Topic.NOTIFICATION_SENT, Topic.AUDIT_RECORDED]


def voucher_without_sme(samples: Path, app_id: str) -> dict:  # type: ignore[type-arg]
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


def operator_file_with_nic(tmp_path: Path) -> Path:
    """The local operator file with Norway's parameters set, as an operator would set them later."""
    values = yaml.safe_load((LOCAL / "operator-parameters.yaml").read_text())
    values["nic"]["application_deadline"] = {2024: date(2024, 9, 16), 2027: date(2027, 9, 15)}
    values["nic"]["announcement_on"] = {2027: date(2027, 10, 15)}
    values["nic"]["levels"]["arena"] = {"yearly_maximum_nok": 3_000_000, "max_years": 5}
    path = tmp_path / "operator-parameters.yaml"
    path.write_text(yaml.safe_dump(values, allow_unicode=True))
    return path


async def test_re_decide_after_setting_a_parameter_then_a_cluster_that_does_not_continue(
    stack: Stack, samples: Path, tmp_path: Path
) -> None:
    app_id = f"NIC-{uuid.uuid4().hex[:8]}"
    topics = [*SEEN, Topic.CLUSTER_EVALUATED, Topic.CALL_OPENED]
    set_file = {"ELIGIBILITY_OPERATOR_PARAMETERS_FILE": str(operator_file_with_nic(tmp_path))}
    async with Collector(stack.bootstrap, stack.prefix, topics) as seen:
        assert (await post(stack, application(samples, "nic-arena.json", app_id))).status_code == 202
        await seen.wait_for(lambda: bool(seen.bodies(Topic.ELIGIBILITY_DECIDED, application_id=app_id)), what="decided")
        assert seen.bodies(Topic.ELIGIBILITY_DECIDED, application_id=app_id)[0]["outcome"] == "needs_review"

        # Under the parameters in force (none set) nothing changes: no revision.
        unchanged = cli(stack, "calls", "re-decide", "--pending", "--scheme", "nic.cluster", "--yes", "--json")
        assert unchanged.returncode == 0, unchanged.stderr
        assert app_id not in [r["application_id"] for r in json.loads(unchanged.stdout)["changes"]["revised"]]

        preview = cli(stack, "calls", "re-decide", "--pending", "--scheme", "nic.cluster", "--dry-run", **set_file)
        assert preview.returncode == 0 and app_id in preview.stdout and "nothing changed" in preview.stdout
        done = cli(stack, "calls", "re-decide", "--pending", "--scheme", "nic.cluster", "--yes", "--json", **set_file)
        assert done.returncode == 0, done.stderr
        [mine] = [r for r in json.loads(done.stdout)["changes"]["revised"] if r["application_id"] == app_id]
        assert (mine["outcome_before"], mine["outcome_after"], mine["revision"]) == ("needs_review", "eligible", 2)
        await seen.wait_for(lambda: len(seen.bodies(Topic.ELIGIBILITY_DECIDED, application_id=app_id)) == 2, what="rev 2")
        second = seen.bodies(Topic.ELIGIBILITY_DECIDED, application_id=app_id)[1]
        assert (second["revision"], second["decided_by"], second["outcome"]) == (2, "rules", "eligible")
        assert second["proposed_grant"]["beneficiary_id"] == "NO-BRC-123456785"
        again = cli(stack, "calls", "re-decide", "--pending", "--scheme", "nic.cluster", "--yes", "--json", **set_file)
        assert app_id not in again.stdout  # no longer pending: replayed once

        evaluate = ["calls", "evaluate", app_id, "--year", "2025", "--not-in-line-with-strategy", "--meets-requirements",
                    "--reason", "strategy abandoned", "--document", "EVAL-2025-7", "--officer", "k-1042",
                    "--yes", "--json"]  # fmt: skip
        evaluated = cli(stack, *evaluate)
        assert evaluated.returncode == 0, evaluated.stderr
        assert json.loads(evaluated.stdout)["outcome"] == "evaluated"
        assert json.loads(cli(stack, *evaluate).stdout)["outcome"] == "unchanged"  # once per cluster and year
        await seen.wait_for(lambda: bool(seen.bodies(Topic.CLUSTER_EVALUATED, application_id=app_id)), what="evaluated")
        [event] = seen.bodies(Topic.CLUSTER_EVALUATED, application_id=app_id)
        assert (event["continues"], event["year"], event["decided_by"]) == (False, 2025, "officer:k-1042")
        assert event["beneficiary_id"] == "NO-BRC-123456785" and event["programme"] == "nic"

        unset = cli(stack, "calls", "open-call", "nic.cluster", "--level", "arena", "--year", "2026", "--yes")
        assert unset.returncode == 2 and "nic.application_deadline" in unset.stderr
        opened = cli(stack, "calls", "open-call", "nic.cluster", "--level", "arena", "--year", "2027", "--yes", **set_file)
        assert opened.returncode == 0, opened.stderr
        await seen.wait_for(lambda: bool(seen.bodies(Topic.CALL_OPENED)), what="call opened")
        call = next(c for c in seen.bodies(Topic.CALL_OPENED) if c["call_id"] == "nic-arena-2027")
        assert (call["deadline"], call["announcement_on"]) == ("2027-09-15T23:59:59+02:00", "2027-10-15")


async def test_s3_step_2_reads_the_projects_own_selection_not_the_portals_claim(stack: Stack, samples: Path) -> None:
    claimed, later = f"S3-{uuid.uuid4().hex[:8]}", f"S3-{uuid.uuid4().hex[:8]}"
    rnd = uuid.uuid4().int
    number = f"55{2 + rnd % 8}{rnd // 8 % 10**6:06d}"  # the third digit is at least 2
    org = f"SE-ON-{number}{luhn_digit(number)}"

    def financing(app_id: str) -> dict:  # type: ignore[type-arg]
        body = application(samples, "s3-financing-vinnvaxt.json", app_id)
        body["prior_funding"] = []
        body["selected_for"] = ["s3-platform"]  # a claim the project's own step 1 does not hold
        body["applicant"]["organisation_number"] = org.removeprefix("SE-ON-")
        return body

    def selection(app_id: str) -> dict:  # type: ignore[type-arg]
        [decided] = seen.bodies(Topic.ELIGIBILITY_DECIDED, application_id=app_id)
        assert decided["outcome"] != "eligible" or app_id == later
        return next(c for c in decided["criteria"] if c["criterion"] == "selected_for_platform")

    async with Collector(stack.bootstrap, stack.prefix, [Topic.ELIGIBILITY_DECIDED, Topic.AUDIT_RECORDED]) as seen:
        assert (await post(stack, financing(claimed))).status_code == 202
        await seen.wait_for(lambda: bool(seen.bodies(Topic.ELIGIBILITY_DECIDED, application_id=claimed)), what="decided")
        first = selection(claimed)
        assert first["outcome"] != "passed"
        assert first["message_key"] in ("s3.financing.claim_not_in_own_selection", "s3.financing.own_selection_unknown")

        recorded = cli(stack, "calls", "record-selection", "s3.platform", org, "--reason", "selected in the regional round",
                       "--document", "TVV-2018-77", "--officer", "k-1042", "--yes")  # fmt: skip
        assert recorded.returncode == 0, recorded.stderr
        assert (await post(stack, financing(later))).status_code == 202
        await seen.wait_for(lambda: bool(seen.bodies(Topic.ELIGIBILITY_DECIDED, application_id=later)), what="decided")
        second = selection(later)
        assert (second["outcome"], second["message_key"]) == ("passed", "s3.financing.selected_outside_project")
        await seen.wait_for(
            lambda: any(a["command"] == "calls record-selection" and a["changes"].get("beneficiary_id") == org
                        for a in seen.bodies(Topic.AUDIT_RECORDED)),
            what="audited",
        )  # fmt: skip


def luhn_digit(number: str) -> int:
    """The check digit of a Swedish organisation number (Luhn over its first nine digits)."""
    total = 0
    for i, ch in enumerate(number):
        d = int(ch) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return (10 - total % 10) % 10
