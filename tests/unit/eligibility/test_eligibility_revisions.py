"""Revisions, the pure part: a finding replaces one criterion and keeps the others' origin; a
re-decision re-runs the rules but keeps what a person decided."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from services.eligibility.handlers import decide
from services.eligibility.parameters import ParameterStore
from services.eligibility.revisions import FindingRefused, check_finding, redecided, with_finding
from shared.events import Application, ApplicationReceived, EligibilityDecided, FindingRecorded

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]
LOCAL = ParameterStore.load(operator_file=str(ROOT / "deploy/local/operator-parameters.yaml"))
NOW = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)


def voucher_without_sme() -> Application:
    body = json.loads((ROOT / "deploy/local/samples/ttc-voucher.json").read_text())
    body["applicant"]["is_sme"] = None
    return Application.model_validate(body)


def first(application: Application) -> EligibilityDecided:
    received = ApplicationReceived(
        application_id=application.application_id, received_at=NOW, channel="http", application=application
    )
    return decide(received, LOCAL, NOW)


def finding(criterion: str, outcome: str, officer: str = "k-1042", finding_id: str = "f-1") -> FindingRecorded:
    return FindingRecorded(
        application_id="DEMO-TTC-VOUCHER",
        finding_id=finding_id,
        criterion=criterion,
        outcome=outcome,  # type: ignore[arg-type]
        reason="KMO-verklaring in het dossier",
        document_reference="DMS-2026-00421",
        officer=officer,
        recorded_at=NOW,
    )


def test_a_passed_finding_makes_the_referred_voucher_eligible_with_its_grant() -> None:
    application = voucher_without_sme()
    one = first(application)
    assert one.outcome == "needs_review" and one.revision == 1 and one.decided_by == "rules"
    two = with_finding(one, "event-1", application, finding("applicant_sme", "passed"), LOCAL, NOW)
    assert (two.revision, two.supersedes, two.decided_by, two.outcome) == (2, "event-1", "officer:k-1042", "eligible")
    assert two.proposed_grant is not None and two.proposed_grant.total.amount_minor == 500_000
    origins = {c.criterion: c.decided_by for c in two.criteria}
    assert origins.pop("applicant_sme") == "officer:k-1042"
    assert set(origins.values()) == {"rules"}
    found = next(c for c in two.criteria if c.criterion == "applicant_sme")
    assert found.message_key == "case.finding.passed"
    assert found.figures["document_reference"].value == "DMS-2026-00421"


def test_a_decision_can_be_revised_again_and_a_failed_finding_removes_the_grant() -> None:
    application = voucher_without_sme()
    two = with_finding(first(application), "e1", application, finding("applicant_sme", "passed"), LOCAL, NOW)
    three = with_finding(two, "e2", application, finding("applicant_sme", "failed", "k-7", "f-2"), LOCAL, NOW)
    assert (three.revision, three.supersedes, three.outcome, three.proposed_grant) == (3, "e2", "ineligible", None)
    assert next(c for c in three.criteria if c.criterion == "applicant_sme").decided_by == "officer:k-7"


def test_a_finding_on_an_unknown_criterion_or_an_unidentified_beneficiary_is_refused() -> None:
    one = first(voucher_without_sme())
    with pytest.raises(FindingRefused, match="no criterion 'nonsense'"):
        check_finding(one, finding("nonsense", "passed"))
    unidentified = one.model_copy(update={"beneficiary_id": None})
    with pytest.raises(FindingRefused, match="register number"):
        check_finding(unidentified, finding("beneficiary", "passed"))


def test_re_deciding_keeps_what_a_person_decided() -> None:
    application = voucher_without_sme()
    one = first(application)
    failed = with_finding(one, "e1", application, finding("applicant_sme", "failed"), LOCAL, NOW)
    again = redecided(failed, "e2", application, LOCAL, NOW)
    assert again.outcome == "ineligible" and again.decided_by == "rules"
    assert next(c for c in again.criteria if c.criterion == "applicant_sme").decided_by == "officer:k-1042"
    # Without a person's finding the rules alone still cannot decide: the outcome does not change.
    assert redecided(one, "e1", application, LOCAL, NOW).outcome == "needs_review"


def test_the_applicant_is_told_in_their_language_that_the_decision_was_revised_and_why() -> None:
    from services.notify.domain import email_template
    from services.notify.i18n import Catalog
    from services.notify.render import render_email

    application = voucher_without_sme().model_copy(update={"language": "nl"})
    one = first(application)
    two = with_finding(one, "e1", application, finding("applicant_sme", "failed"), LOCAL, NOW)
    assert email_template(one) == "eligibility.needs_review"
    assert email_template(two) == "eligibility.revised.ineligible"
    mail = render_email(Catalog.load(), two)
    assert mail.template == "eligibility.revised.ineligible" and not mail.problems
    assert "herzien (herziening 2)" in mail.text
    assert "KMO-verklaring in het dossier (document DMS-2026-00421)" in mail.text
