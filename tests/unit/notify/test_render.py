"""E-mails in the applicant's language, figures written the way the locale writes them."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from services.notify.i18n import LANGUAGES, Catalog, Formatter, locale_for
from services.notify.render import StoredDecision, render_email
from shared.events import (
    ApplicationRejected,
    Contact,
    CriterionResult,
    EligibilityDecided,
    FieldError,
    Figure,
    FundShare,
    GrantCommitted,
    GrantRefused,
    GrantReleased,
    ProposedGrant,
    Recipient,
    ReleasedAmount,
    ScheduledAmount,
)
from shared.money import Money

pytestmark = pytest.mark.unit

CATALOG = Catalog.load()
NOW = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)


def recipient(language: str, org: str = "Demo <Cluster> & Co") -> Recipient:
    # (ignore below) tests pass languages as str
    return Recipient(language=language, contact=Contact(name="Jo Test", email="jo@example.org"), organisation_name=org)  # type: ignore[arg-type]


def fmt(language: str, scheme: str | None = None) -> Formatter:
    return Formatter(CATALOG, language, locale_for(language, scheme), "Europe/Brussels")


@pytest.mark.parametrize(
    ("language", "scheme", "minor", "currency", "expected"),
    [
        ("nl", "vlaio.spearhead-cluster", 123_456_789, "EUR", "€\u00a01.234.567,89"),
        ("de", "ttc.innovation-voucher", 500_000, "EUR", "5.000,00\u00a0€"),
        ("fr", "ttc.innovation-voucher", 500_001, "EUR", "5\u202f000,01\u00a0€"),
        ("en", None, 5, "EUR", "€0.05"),
        ("en", "vlaio.spearhead-cluster", 5, "EUR", "0,05\u00a0€"),  # en_BE writes as Belgium does
        ("sv", "s3.financing", 1_000_000_00, "SEK", "1\u00a0000\u00a0000,00\u00a0kr"),
        ("nb", "nic.cluster", 250_000_000, "NOK", "2\u00a0500\u00a0000,00\u00a0kr"),
        # beyond float precision: every cent survives
        ("en", None, 12_345_678_901_234_567, "EUR", "€123,456,789,012,345.67"),
    ],
)
def test_money_is_written_exactly_in_the_locale(
    language: str, scheme: str | None, minor: int, currency: str, expected: str
) -> None:
    assert fmt(language, scheme).money(minor, currency) == expected


def test_percentages_dates_years_and_countries_per_locale() -> None:
    de = fmt("de", "ttc.innovation-fund")
    assert de.percent("33.5") == "33,5\u00a0%"
    assert de.percent("100/3") == "≈33,33\u00a0%"
    assert fmt("en").percent("50") == "50%"
    assert de.figure("deadline", Figure(unit="date", value="2019-10-01")) == "1. Oktober 2019"
    assert fmt("fr").figure("deadline", Figure(unit="date", value="2019-10-01")) == "1 octobre 2019"
    assert de.figure("budget_year", Figure(unit="count", value=2020)) == "2020"  # a year, never "2.020"
    assert de.figure("enterprises", Figure(unit="count", value=12000)) == "12.000"
    assert fmt("nl", "vlaio.cluster-pact").figure("country", Figure(unit="text", value="DE")) == "Duitsland"
    assert fmt("nb").figure("ok", Figure(unit="bool", value=True)) == "ja"
    assert locale_for("nl", "vlaio.spearhead-cluster") == "nl_BE"
    assert locale_for("en", "nic.cluster") == "en_NO"
    assert locale_for("xx") == "en_GB"  # English is the fallback


def test_an_ineligible_decision_is_explained_criterion_by_criterion_in_french() -> None:
    event = EligibilityDecided(
        application_id="TTC-V-7",
        scheme="ttc.innovation-voucher",
        decided_at=NOW,
        reference_date=date(2012, 4, 2),
        time_zone="Europe/Brussels",
        outcome="ineligible",
        parameter_version="2012",
        recipient=recipient("fr"),
        criteria=[
            CriterionResult(criterion="first_voucher", outcome="passed", message_key="ttc.voucher.first"),
            CriterionResult(
                criterion="voucher_amount",
                outcome="failed",
                message_key="ttc.voucher.amount_exceeded",
                figures={
                    "requested": Figure(unit="money", value=500_001, currency="EUR"),
                    "limit": Figure(unit="money", value=500_000, currency="EUR"),
                },
            ),
            CriterionResult(criterion="funding_request", outcome="not_decidable", message_key="ttc.funding.missing"),
        ],
    )
    email = render_email(CATALOG, event)
    assert email.problems == []
    assert email.subject == "Demande TTC-V-7 : non recevable"
    assert "Bonjour Jo Test," in email.text
    assert "✓ rempli: Le chèque finance les tout premiers travaux" in email.text
    assert "✗ non rempli: La demande de 5\u202f000,01\u00a0€ dépasse le montant du chèque de 5\u202f000,00\u00a0€." in email.text
    assert "? à examiner: La demande ne contient aucune demande de financement." in email.text  # via *.funding.missing
    assert '<html lang="fr">' in email.html
    assert "5\u202f000,01\u00a0€" in email.html


def test_a_committed_grant_in_german_lists_amounts_per_year_and_the_criteria_and_escapes_html() -> None:
    grant = ProposedGrant(
        programme="vlaio",
        instrument="coordination-subsidy",
        currency="EUR",
        schedule=[
            ScheduledAmount(budget_year=2021, amount=Money(amount_minor=50_000_000, currency="EUR")),
            ScheduledAmount(budget_year=2020, amount=Money(amount_minor=40_000_000, currency="EUR")),
        ],
        fund_shares=[FundShare(fund="agency", numerator=1, denominator=1)],
    )
    event = GrantCommitted(
        application_id="VLAIO-1",
        grant_id="g-1",
        committed_at=NOW,
        scheme="vlaio.spearhead-cluster",
        grant=grant,
        recipient=recipient("de"),
    )
    decision = StoredDecision(
        [
            CriterionResult(
                criterion="call_open",
                outcome="passed",
                message_key="vlaio.call.open",
                figures={"reference_date": Figure(unit="date", value="2019-10-01")},
            )
        ],
        "Europe/Brussels",
    )
    email = render_email(CATALOG, event, decision)
    assert email.problems == []
    assert email.subject == "Antrag VLAIO-1: Förderung von 900.000,00\u00a0€ bewilligt"
    assert email.text.index("- 2020: 400.000,00\u00a0€") < email.text.index("- 2021: 500.000,00\u00a0€")
    assert "Der Aufruf war am 1. Oktober 2019 geöffnet." in email.text
    assert "Demo <Cluster> & Co" in email.text
    assert "Demo &lt;Cluster&gt; &amp; Co" in email.html
    assert "<Cluster>" not in email.html


def release(reason: str, released: list[tuple[int, str, int]], remaining: list[tuple[int, int]]) -> GrantReleased:
    return GrantReleased.model_validate(
        {
            "application_id": "VLAIO-7",
            "grant_id": "g-7",
            "released_at": NOW,
            "scheme": "vlaio.spearhead-cluster",
            "programme": "vlaio",
            "reason": reason,
            "released": [
                ReleasedAmount(budget_year=y, fund=f, amount=Money(amount_minor=m, currency="EUR")) for y, f, m in released
            ],
            "remaining": [ScheduledAmount(budget_year=y, amount=Money(amount_minor=m, currency="EUR")) for y, m in remaining],
        }
    )


def test_a_reduced_grant_in_dutch_sums_each_years_funds_and_lists_what_remains() -> None:
    event = release(
        "reduced",
        [(2022, "erdf", 30_000), (2021, "agency", 100_000), (2022, "co-financing", 20_000)],
        [(2021, 400_000), (2020, 500_000), (2022, 0)],
    )
    email = render_email(CATALOG, event, recipient=recipient("nl"))
    assert email.problems == []
    assert email.template == "release.reduced"
    assert email.subject == "Aanvraag VLAIO-7: steun verminderd met €\u00a01.500,00"
    assert "(begrotingsjaren 2021, 2022)" in email.text
    returned = email.text.index("Terug naar de begroting, per begrotingsjaar")
    after = email.text.index("Bedragen van de steun per begrotingsjaar na deze wijziging")
    assert returned < email.text.index("- 2021: €\u00a01.000,00") < email.text.index("- 2022: €\u00a0500,00") < after
    assert after < email.text.index("- 2020: €\u00a05.000,00") < email.text.index("- 2021: €\u00a04.000,00")
    assert email.text.index("- 2021: €\u00a04.000,00") < email.text.index("- 2022: €\u00a00,00")
    assert "Beste Jo Test," in email.text
    assert "Demo &lt;Cluster&gt; &amp; Co" in email.html and "<Cluster>" not in email.html


def test_a_capped_and_a_withdrawn_grant_and_every_language_without_a_fallback() -> None:
    capped = render_email(CATALOG, release("capped", [(2023, "agency", 7_500)], [(2023, 92_500)]), recipient=recipient("en"))
    assert capped.subject == "Application VLAIO-7: amount for 2023 capped at the yearly maximum"
    assert "When budget year 2023 opened" in capped.text and "75,00\u00a0€ less" in capped.text  # en_BE writes as Belgium
    withdrawn = release("withdrawn", [(2024, "agency", 250_000)], [])
    email = render_email(CATALOG, withdrawn, recipient=recipient("de"))
    assert email.subject == "Antrag VLAIO-7: Förderung zurückgenommen"
    assert "insgesamt 2.500,00\u00a0€" in email.text
    assert "nach dieser Änderung" not in email.text  # nothing remains: no empty list
    for language in LANGUAGES:
        for reason in ("withdrawn", "reduced", "capped"):
            rendered = render_email(CATALOG, release(reason, [(2024, "agency", 1)], [(2023, 2)]), recipient=recipient(language))
            assert rendered.problems == [], (language, reason)
            assert rendered.language == language and "{" not in rendered.text, (language, reason)
    with pytest.raises(ValueError, match="recipient"):
        render_email(CATALOG, withdrawn)  # a release carries no contact: never rendered to nobody


def test_a_refusal_in_norwegian_and_a_rejection_in_swedish() -> None:
    refused = GrantRefused(
        application_id="NIC-9",
        refused_at=NOW,
        scheme="nic.cluster",
        limit="pot:nic/agency",
        message_key="budget.pot_exhausted",
        budget_year=2024,
        recipient=recipient("nb"),
        available=Money(amount_minor=100_000_000, currency="NOK"),
        requested=Money(amount_minor=250_000_000, currency="NOK"),
    )
    email = render_email(CATALOG, refused)
    assert email.problems == []
    assert "Budsjettet for 2024 har 1\u00a0000\u00a0000,00\u00a0kr igjen" in email.text
    rejected = ApplicationRejected(
        rejection_id="r-1",
        application_id="S3-1",
        rejected_at=NOW,
        channel="http",
        reason="invalid",
        language="sv",
        contact=Contact(name="Sven Test", email="sven@example.org"),
        errors=[
            FieldError(loc=["funding", "years", 0, "requested", "amount_minor"], type="money_negative", message="m"),
            FieldError(loc=[], type="some_new_pydantic_type", message="x"),
        ],
    )
    email = render_email(CATALOG, rejected)
    assert email.subject == "Inlämning S3-1: inte godtagen"
    assert "- funding.years.0.requested.amount_minor: Ett belopp får inte vara negativt." in email.text
    assert "- inlämningen som helhet: Värdet är inte giltigt." in email.text


def test_a_key_without_text_falls_back_and_is_reported_by_key_only() -> None:
    event = EligibilityDecided(
        application_id="X-1",
        scheme="nic.cluster",
        decided_at=NOW,
        reference_date=date(2024, 1, 1),
        time_zone="Europe/Oslo",
        outcome="ineligible",
        parameter_version="v",
        recipient=recipient("nb"),
        criteria=[
            CriterionResult(criterion="brand_new_rule", outcome="failed", message_key="nic.brand_new.key"),
            CriterionResult(
                criterion="duration",
                outcome="failed",
                message_key="nic.funding.duration_exceeded",
                figures={"requested": Figure(unit="years", value=12)},
            ),
        ],  # {limit} missing
    )
    email = render_email(CATALOG, event)
    assert "Kriterium «brand new rule»" in email.text
    assert "text_missing:messages.nic.brand_new.key:nb" in email.problems
    assert "placeholder_missing:messages.nic.funding.duration_exceeded:limit" in email.problems
    assert not any("Jo Test" in p or "jo@example.org" in p for p in email.problems)


def test_a_stored_decision_reads_back_as_it_was_written_for_every_sample_and_a_broken_one_is_refused() -> None:
    import json as json_
    from pathlib import Path

    from pydantic import ValidationError

    from services.eligibility.handlers import decide
    from services.eligibility.parameters import ParameterStore
    from services.notify.repository import decision_json, read_decision
    from shared.events import Application, ApplicationReceived

    samples = Path(__file__).resolve().parents[3] / "deploy/local/samples"
    parameters = ParameterStore.load(operator_file=samples.parent / "operator-parameters.yaml")
    decided = 0
    for path in sorted(samples.glob("[!z]*.json")):
        application = Application.model_validate({**json_.loads(path.read_text()), "application_id": f"RT-{path.stem}"})
        received = ApplicationReceived(
            application_id=application.application_id, received_at=datetime.now(UTC), channel="kafka", application=application
        )
        event = decide(received, parameters)
        stored = StoredDecision(event.criteria, event.time_zone)
        text = decision_json(stored)
        assert read_decision(text) == stored
        assert json_.loads(text) == {
            "criteria": [c.model_dump(mode="json") for c in event.criteria],
            "time_zone": event.time_zone,
        }
        decided += bool(event.criteria)
    assert decided >= 8
    with pytest.raises(ValidationError):
        read_decision('{"criteria": [{"criterion": 1}], "time_zone": "UTC"}')
