"""Who is told what; back-off; redaction; subscription configuration (signatures: test_webhooks.py)."""

from __future__ import annotations

import base64
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Literal

import pytest

from services.notify.domain import (
    Subscriptions,
    plan,
    recipient_ref,
    redact,
    retry_delay_s,
)
from services.notify.webhooks import WebhookConfigError, load_subscriptions, new_secret
from shared.events import (
    CeilingReset,
    Contact,
    CriterionResult,
    EligibilityDecided,
    FundShare,
    GrantReleased,
    ProposedGrant,
    Recipient,
    ReleasedAmount,
    ScheduledAmount,
    SchemeId,
)
from shared.money import Money

pytestmark = pytest.mark.unit

NOW = datetime(2024, 3, 1, tzinfo=UTC)
KEY = b"unit-test recipient-ref key, 32+ chars"
SUBS = Subscriptions.model_validate(
    {
        "subscriptions": [
            {
                "id": "vlaio-dossier",
                "url": "https://vlaio.example/hook",
                "secret_env": "SECRET_A",
                "events": ["org.clustergrants.eligibility.decided.v1"],
                "schemes": ["vlaio.spearhead-cluster"],
            },
            {
                "id": "treasury",
                "url": "https://treasury.example/hook",
                "secret_env": "SECRET_B",
                "events": ["org.clustergrants.budget.ceiling-reset.v1", "org.clustergrants.eligibility.decided.v1"],
            },
        ]
    }
)


def decided(
    outcome: Literal["eligible", "ineligible", "needs_review"], grant: bool, scheme: SchemeId = "vlaio.spearhead-cluster"
) -> EligibilityDecided:
    proposed = (
        ProposedGrant(
            programme="vlaio",
            instrument="coordination-subsidy",
            currency="EUR",
            schedule=[ScheduledAmount(budget_year=2020, amount=Money(amount_minor=1, currency="EUR"))],
            fund_shares=[FundShare(fund="agency", numerator=1, denominator=1)],
        )
        if grant
        else None
    )
    return EligibilityDecided(
        application_id="A-1",
        scheme=scheme,
        decided_at=NOW,
        reference_date=date(2020, 1, 1),
        time_zone="Europe/Brussels",
        outcome=outcome,
        parameter_version="v",
        proposed_grant=proposed,
        criteria=[CriterionResult(criterion="c", outcome="passed", message_key="vlaio.call.open")],
        recipient=Recipient(language="nl", contact=Contact(name="An", email="An@Example.org"), organisation_name="O"),
    )


def test_one_email_per_outcome_and_one_webhook_per_interested_agency() -> None:
    ineligible = plan(decided("ineligible", grant=False), SUBS, ref_key=KEY)
    assert [(p.channel, p.template) for p in ineligible] == [
        ("email", "eligibility.ineligible"),
        ("webhook", "webhook:org.clustergrants.eligibility.decided.v1"),
        ("webhook", "webhook:org.clustergrants.eligibility.decided.v1"),
    ]
    assert ineligible[0].recipient_ref == recipient_ref("an@example.org", KEY)
    assert "@" not in ineligible[0].recipient_ref
    assert len({p.dedupe_key("evt-1") for p in ineligible}) == 3
    # Eligible with money: the budget's answer is the one the applicant is told.
    assert [p.channel for p in plan(decided("eligible", grant=True), SUBS, ref_key=KEY)] == ["webhook", "webhook"]
    # The scheme filter: another scheme reaches only the unfiltered subscription.
    other = plan(decided("needs_review", grant=False, scheme="nic.cluster"), SUBS, ref_key=KEY)
    assert [p.subscription_id for p in other] == [None, "treasury"]
    reset = CeilingReset(reset_id="vlaio/2021", programme="vlaio", budget_year=2021, opened_at=NOW)
    planned = [(p.channel, p.subscription_id, p.application_id) for p in plan(reset, SUBS, ref_key=KEY)]
    assert planned == [("webhook", "treasury", None)]


def released(reason: str) -> GrantReleased:
    return GrantReleased.model_validate(
        {
            "application_id": "A-1",
            "grant_id": "G-1",
            "released_at": NOW,
            "scheme": "vlaio.spearhead-cluster",
            "programme": "vlaio",
            "reason": reason,
            "released": [ReleasedAmount(budget_year=2021, fund="agency", amount=Money(amount_minor=5, currency="EUR"))],
            "remaining": [],
        }
    )


RELEASES = Subscriptions.model_validate(
    {
        "subscriptions": [
            {
                "id": "ledger",
                "url": "https://ledger.example/hook",
                "secret_env": "SECRET_A",
                "events": ["org.clustergrants.grant.released.v1"],
            }
        ]
    }
)


@pytest.mark.parametrize(
    ("reason", "template"),
    [
        ("withdrawn", "release.withdrawn"),
        ("reduced", "release.reduced"),
        ("capped", "release.capped"),
        ("revoked", None),  # told by the revised decision
        ("not_continued", None),  # told by cluster.discontinued
    ],
)
def test_a_release_is_e_mailed_to_its_grants_recipient_for_some_reasons_and_sent_to_agencies_for_all(
    reason: str, template: str | None
) -> None:
    who = Recipient(language="sv", contact=Contact(name="Bo", email="Bo@Example.se"), organisation_name="O")
    known = plan(released(reason), RELEASES, ref_key=KEY, recipient=who)
    emails = [(p.template, p.recipient_ref, p.language) for p in known if p.channel == "email"]
    assert emails == ([(template, recipient_ref("bo@example.se", KEY), "sv")] if template else [])
    assert [(p.channel, p.subscription_id) for p in known if p.channel == "webhook"] == [("webhook", "ledger")]
    # Its recipient not stored yet: planned to the grant, waiting for it (claim_due), never to nobody.
    unknown = [p for p in plan(released(reason), RELEASES, ref_key=KEY) if p.channel == "email"]
    assert [(p.template, p.recipient_ref) for p in unknown] == ([(template, "grant:G-1")] if template else [])


def test_backoff_doubles_up_to_the_cap() -> None:
    assert [retry_delay_s(n, 2.0, 30.0) for n in (1, 2, 3, 4, 5, 6)] == [2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert retry_delay_s(3, 2.0, 30.0, jitter=0.5) == 4.0


def test_redaction_removes_addresses_and_named_values() -> None:
    text = "SMTPRecipientsRefused: {'an.demo@example.org': (550, 'no such user')} for An Demo"
    cleaned = redact(text, "An Demo")
    assert "example.org" not in cleaned
    assert "An Demo" not in cleaned
    assert "550" in cleaned


def test_subscriptions_file_is_validated_and_secrets_come_from_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "webhooks.yaml"
    path.write_text(
        "subscriptions:\n  - {id: agency, url: 'https://agency.example/h', secret_env: AGENCY_SECRET,"
        " events: [org.clustergrants.grant.committed.v1]}\n"
    )
    secret = new_secret()
    assert load_subscriptions(path, {"AGENCY_SECRET": secret}).subscriptions[0].id == "agency"
    with pytest.raises(WebhookConfigError, match="AGENCY_SECRET is unset"):
        load_subscriptions(path, {})
    for bad, why in (
        ("x" * 40, "must start with whsec_"),
        ("whsec_" + "!" * 40, "not whsec_ followed by base64"),
        ("whsec_" + base64.b64encode(b"16 bytes only!!!").decode(), "must encode 24-64 bytes, not 16"),
    ):
        with pytest.raises(WebhookConfigError, match=why) as refused:
            load_subscriptions(path, {"AGENCY_SECRET": bad})
        assert bad not in str(refused.value)  # the secret is never quoted
    path.write_text("subscriptions:\n  - {id: agency, url: 'https://x/h', secret_env: S, events: [org.clustergrants.nope.v1]}\n")
    with pytest.raises(WebhookConfigError, match="unknown event types"):
        load_subscriptions(path, {"S": secret})
    assert load_subscriptions(None).subscriptions == []
