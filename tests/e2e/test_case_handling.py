"""Case handling over the real pipeline: a referred application decided by a case handler's finding,
revisions downstream, re-decisions, S3's own selection, a portal's status read."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime
from hashlib import sha256
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import yaml

from services.eligibility.parameters import ParameterStore
from services.eligibility.revisions import with_finding
from shared.cloudevents import attributes_for, to_headers
from shared.events import Application, EligibilityDecided, FindingRecorded
from shared.topics import Topic, service_source, topic_name
from tests.e2e.conftest import LOCAL, Stack
from tests.e2e.test_cli import cli
from tests.e2e.test_pipeline import application, post
from tests.kafka_tools import Collector, headers_of, publish_raw
from tests.smtp import Inbox

pytestmark = pytest.mark.e2e

SEEN = [Topic.ELIGIBILITY_DECIDED, Topic.GRANT_COMMITTED, Topic.GRANT_REFUSED, Topic.NOTIFICATION_SENT, Topic.AUDIT_RECORDED]


def voucher_without_sme(samples: Path, app_id: str) -> dict[str, Any]:
    body = application(samples, "ttc-voucher.json", app_id)
    body["applicant"]["is_sme"] = None  # the rules cannot tell: a case handler decides
    # An organisation of its own: the budget keeps one voucher per company (other tests use the sample's).
    body["applicant"]["organisation_number"] = f"Amtsgericht Aachen HRB {int(sha256(app_id.encode()).hexdigest(), 16) % 10**6}"
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
    # The local budget file leaves every NIC figure unset on purpose (no NIC pot): the budget refuses this
    # grant, so there is nothing to release here; the release itself is the budget's tests' (ledger).
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
        await seen.wait_for(
            lambda: any(n["template"] == "cluster.discontinued" and n["channel"] == "email"
                        for n in seen.bodies(Topic.NOTIFICATION_SENT, application_id=app_id)),
            what="the cluster told",
        )  # fmt: skip

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

    def financing(app_id: str) -> dict[str, Any]:
        body = application(samples, "s3-financing-vinnvaxt.json", app_id)
        body["prior_funding"] = []
        body["selected_for"] = ["s3-platform"]  # a claim the project's own step 1 does not hold
        body["applicant"]["organisation_number"] = org.removeprefix("SE-ON-")
        return body

    def selection(app_id: str) -> dict[str, Any]:
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


async def test_status_read_by_its_portal_refused_to_another_and_a_finding_over_http(stack: Stack, samples: Path) -> None:
    app_id = f"STAT-{uuid.uuid4().hex[:8]}"
    officer = {"Authorization": "Bearer officer-token"}

    async def get(path: str, headers: dict[str, str]) -> httpx.Response:
        async with httpx.AsyncClient(base_url=stack.intake_url, timeout=10) as client:
            return await client.get(path, headers=headers)

    async def status() -> dict:  # type: ignore[type-arg]
        response = await get(f"/v1/applications/{app_id}", {"Authorization": f"Bearer {stack.token}"})
        assert response.status_code == 200, response.text
        return response.json()

    async def settled(check: Callable[[dict], bool], what: str) -> dict:  # type: ignore[type-arg]
        for _ in range(300):
            current = await status()
            if check(current):
                return current
            await asyncio.sleep(0.2)
        raise AssertionError(f"status never showed {what}: {current}")

    assert (await post(stack, voucher_without_sme(samples, app_id))).status_code == 202
    first = await settled(lambda s: bool(s["decisions"]) and bool(s["notifications"]), "the referral")
    assert first["status"] == "decided" and first["decisions"][0]["outcome"] == "needs_review"
    assert (await get(f"/v1/applications/{app_id}", {"Authorization": "Bearer other-token"})).status_code == 404
    assert (await get("/v1/reviews", {"Authorization": f"Bearer {stack.token}"})).status_code == 401
    listed = await get("/v1/reviews?scheme=ttc.innovation-voucher", officer)
    [mine] = [p for p in listed.json()["pending"] if p["application_id"] == app_id]
    assert [c["criterion"] for c in mine["criteria"]] == ["applicant_sme"]

    async with httpx.AsyncClient(base_url=stack.intake_url, timeout=10) as client:
        body = {"criterion": "applicant_sme", "outcome": "passed", "reason": "SME declaration in the file",
                "document_reference": "DMS-7", "based_on_revision": 1}  # fmt: skip
        refused = await client.post(
            f"/v1/applications/{app_id}/findings", json=body, headers={"Authorization": f"Bearer {stack.token}"}
        )
        assert refused.status_code == 401  # a portal is no case handler
        accepted = await client.post(f"/v1/applications/{app_id}/findings", json=body, headers=officer)
        assert accepted.status_code == 202, accepted.text
    done = await settled(lambda s: s["status"] == "committed" and len(s["notifications"]) >= 2, "the commitment")
    [one, two] = done["decisions"]
    assert (two["revision"], two["supersedes"], two["decided_by"]) == (2, one["event_id"], "officer:k-2001")
    assert done["grant"]["schedule"][0]["amount"] == {"amount_minor": 500_000, "currency": "EUR"}
    assert {n["template"] for n in done["notifications"] if n["channel"] == "email"} == {
        "eligibility.needs_review",
        "grant.committed",
    }
    async with httpx.AsyncClient(base_url=stack.intake_url, timeout=10) as client:
        stale = await client.post(f"/v1/applications/{app_id}/findings", json=body, headers=officer)
    assert stale.status_code == 409 and stale.json()["errors"][0]["type"] == "revision_superseded"


async def test_revisions_delivered_out_of_order(stack: Stack, samples: Path) -> None:
    """Revision 3 (ineligible) arrives before revision 2 (eligible, with its grant): the status shows
    revision 3 as the latest, and the budget, having applied 3, never commits the older 2."""
    app_id = f"OOO-{uuid.uuid4().hex[:8]}"
    async with Collector(stack.bootstrap, stack.prefix, [Topic.ELIGIBILITY_DECIDED]) as seen:
        assert (await post(stack, voucher_without_sme(samples, app_id))).status_code == 202
        await seen.wait_for(lambda: bool(seen.bodies(Topic.ELIGIBILITY_DECIDED, application_id=app_id)), what="decided")
    first = EligibilityDecided.model_validate(seen.bodies(Topic.ELIGIBILITY_DECIDED, application_id=app_id)[0])
    first_id = headers_of(seen.matching(Topic.ELIGIBILITY_DECIDED, application_id=app_id)[0])["ce_id"]
    application = Application.model_validate(voucher_without_sme(samples, app_id))
    parameters = ParameterStore.load(operator_file=str(LOCAL / "operator-parameters.yaml"))
    now = datetime.now(UTC)

    def officer(outcome: str, who: str) -> FindingRecorded:
        return FindingRecorded(application_id=app_id, finding_id=f"f-{who}", criterion="applicant_sme",
                               outcome=outcome, reason="r", document_reference="D", officer=who, recorded_at=now)  # type: ignore[arg-type]  # fmt: skip

    second = with_finding(first, first_id, application, officer("passed", "k-1"), parameters, now)
    third = with_finding(second, "rev-2-id", application, officer("failed", "k-2"), parameters, now)
    assert (second.outcome, second.proposed_grant is not None, third.outcome) == ("eligible", True, "ineligible")
    topic = topic_name(Topic.ELIGIBILITY_DECIDED, stack.prefix)
    ids = {3: f"rev-3-{app_id}", 2: f"rev-2-{app_id}"}
    for decided in (third, second):  # newest first
        attributes = attributes_for(decided, source=service_source("eligibility"), event_id=ids[decided.revision])
        await publish_raw(stack.bootstrap, topic, decided.model_dump_json().encode(), app_id.encode(), to_headers(attributes))

    conn = await asyncpg.connect(stack.database_url)
    try:
        for _ in range(300):
            intake_has = await conn.fetchval(
                "SELECT count(*) FROM intake.status_events WHERE event_id = ANY($1)", list(ids.values())
            )
            budget_has = await conn.fetchval("SELECT count(*) FROM budget.inbox WHERE event_id = ANY($1)", list(ids.values()))
            if intake_has == 2 and budget_has == 2:
                break
            await asyncio.sleep(0.2)
        else:
            raise AssertionError("intake and budget never consumed both revisions")
        committed = await conn.fetchval("SELECT count(*) FROM budget.grants WHERE application_id = $1", app_id)
    finally:
        await conn.close()
    assert committed == 0  # revision 2 came after 3 had been applied: ignored
    async with httpx.AsyncClient(base_url=stack.intake_url, timeout=10) as client:
        answer = (await client.get(f"/v1/applications/{app_id}", headers={"Authorization": f"Bearer {stack.token}"})).json()
    assert [d["revision"] for d in answer["decisions"]] == [1, 2, 3]
    assert answer["decisions"][-1]["outcome"] == "ineligible" and answer["status"] == "decided" and answer["grant"] is None
