"""Notify's use cases on in-memory fakes: a batch schedules what it owes once, the dispatcher sends a
claimed batch and records it at once, a grant e-mail waits for its decision, a failure is counted."""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
from datetime import UTC, date, datetime, timedelta

import pytest
from aiokafka import ConsumerRecord
from pydantic import SecretStr

from services.notify import handlers
from services.notify.domain import Subscriptions, recipient_ref
from services.notify.i18n import Catalog
from services.notify.mail import Composed, MailerPool
from services.notify.repository import DueNotification
from services.notify.settings import NotifySettings
from shared.cloudevents import attributes_for
from shared.events import (
    CeilingReset,
    Contact,
    CriterionResult,
    EligibilityDecided,
    Event,
    FundShare,
    GrantCommitted,
    GrantReleased,
    ProposedGrant,
    Recipient,
    ReleasedAmount,
    ScheduledAmount,
)
from shared.money import Money
from shared.records import Delivery, Position
from tests.unit.notify.fakes import FakeMailer, FakeNotifyRepository, FakeTransactions

pytestmark = pytest.mark.unit

KEY = b"unit-test recipient-ref key, 32+ chars"
NOW = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
SUBS = Subscriptions.model_validate(
    {
        "subscriptions": [
            {
                "id": "agency",
                "url": "https://agency.example/hook",
                "secret_env": "SECRET_A",
                "events": ["org.clustergrants.eligibility.decided.v1"],
            }
        ]
    }
)
SETTINGS = NotifySettings(notify_decision_wait_s=30, notify_dispatch_batch=50, notify_recipient_ref_key=SecretStr(KEY.decode()))
WHO = Recipient(language="en", contact=Contact(name="Åsa Öberg", email="asa@example.org"), organisation_name="O")


TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


def delivery(event: Event, offset: int) -> Delivery[Event]:
    attributes = attributes_for(event, source="/clustergrants/eligibility")
    headers = (("traceparent", f"00-{TRACE_ID}-00f067aa0ba902b7-01".encode()),)
    record = ConsumerRecord("t", 0, offset, 0, 0, None, b"", None, 0, 0, headers)
    return Delivery(event, attributes, Position("t", 0, offset), record)


def decided(app: str, outcome: str = "ineligible") -> EligibilityDecided:
    grant = ProposedGrant(
        programme="vlaio",
        instrument="coordination-subsidy",
        currency="EUR",
        schedule=[ScheduledAmount(budget_year=2020, amount=Money(amount_minor=100, currency="EUR"))],
        fund_shares=[FundShare(fund="agency", numerator=1, denominator=1)],
    )
    return EligibilityDecided(
        application_id=app,
        scheme="vlaio.spearhead-cluster",
        decided_at=NOW,
        reference_date=date(2020, 1, 1),
        time_zone="Europe/Brussels",
        outcome=outcome,  # type: ignore[arg-type]  # a str from the test's parameter
        parameter_version="v",
        proposed_grant=grant if outcome == "eligible" else None,
        criteria=[CriterionResult(criterion="c", outcome="passed", message_key="vlaio.call.open")],
        recipient=WHO,
    )


def committed(app: str) -> GrantCommitted:
    grant = decided(app, "eligible").proposed_grant
    assert grant is not None
    return GrantCommitted(
        application_id=app, grant_id=f"G-{app}", committed_at=NOW, scheme="vlaio.spearhead-cluster", grant=grant, recipient=WHO
    )


def dispatcher(transactions: FakeTransactions, mailer: FakeMailer) -> handlers.Dispatcher:
    return handlers.Dispatcher(transactions, SETTINGS, Catalog.load(), lambda: mailer, None, SUBS)


async def test_a_batch_schedules_what_it_owes_once_and_a_redelivery_nothing() -> None:
    repo = FakeNotifyRepository()
    tx = FakeTransactions(repo)
    batch = [delivery(decided(f"A-{i}"), i) for i in range(3)]
    assert await handlers.on_events(tx.unit_of_work(), batch, SUBS, ref_key=KEY) == 6  # an e-mail and a webhook each
    assert sorted(repo.decisions_by_app) == ["A-0", "A-1", "A-2"]
    assert await handlers.on_events(tx.unit_of_work(), batch, SUBS, ref_key=KEY) == 0
    assert len(repo.notifications) == 6
    stored = next(iter(repo.notifications.values()))
    assert stored["payload"]["ce"]["id"] == batch[0].event_id  # the webhook's CloudEvent is the consumed one
    assert stored["payload"]["event"] == batch[0].event.model_dump(mode="json")  # what the e-mail is rendered from
    assert "asa@example.org" not in stored["recipient_ref"]


async def test_the_dispatcher_sends_a_claimed_batch_and_records_it_in_one_go() -> None:
    repo = FakeNotifyRepository()
    tx = FakeTransactions(repo)
    mailer = FakeMailer()
    await handlers.on_events(tx.unit_of_work(), [delivery(decided(f"A-{i}"), i) for i in range(4)], Subscriptions(), ref_key=KEY)
    assert await dispatcher(tx, mailer).dispatch(mailer, 50) == 4
    assert len(mailer.sent) == 4 and len(repo.of("sent")) == 4
    assert all(r["payload"] is None for r in repo.of("sent"))  # the personal copy is gone
    sent = [json.loads(row.payload or b"{}") for row in tx.outbox]
    assert sorted(s["application_id"] for s in sent) == ["A-0", "A-1", "A-2", "A-3"]
    assert {s["notification_id"] for s in sent} == {str(r["notification_id"]) for r in repo.of("sent")}
    for row in tx.outbox:  # NotificationSent continues the consumed event's trace, through the dispatcher
        assert dict(row.headers)["traceparent"].split("-")[1] == TRACE_ID
    for message in mailer.sent:
        parsed = email.message_from_bytes(message.data, policy=email.policy.default)
        assert parsed["To"] == "asa@example.org" and parsed["Message-ID"] == message.message_id
    assert await dispatcher(tx, mailer).dispatch(mailer, 50) == 0  # nothing due any more


async def test_a_grant_email_waits_for_its_decision_then_explains_it() -> None:
    repo = FakeNotifyRepository()
    tx = FakeTransactions(repo)
    mailer = FakeMailer()
    await handlers.on_events(tx.unit_of_work(), [delivery(committed("A-9"), 1)], Subscriptions(), ref_key=KEY)
    d = dispatcher(tx, mailer)
    assert await d.dispatch(mailer, 50) == 0  # not claimed before its decision: nothing to look at again later
    assert mailer.sent == [] and tx.outbox == []
    (row,) = repo.of("scheduled")
    assert row["next_attempt_at"] <= repo.now and row["attempts"] == 0  # still due, no attempt counted
    await handlers.on_events(tx.unit_of_work(), [delivery(decided("A-9", "eligible"), 2)], Subscriptions(), ref_key=KEY)
    assert await d.dispatch(mailer, 50) == 1  # claimable as soon as the decision is stored
    assert len(mailer.sent) == 1 and repo.of("sent")[0]["template"] == "grant.committed"
    text = email.message_from_bytes(mailer.sent[0].data, policy=email.policy.default)
    assert text.get_body(preferencelist=("plain",)) is not None


async def test_a_grant_email_goes_without_its_decision_once_the_wait_is_over() -> None:
    repo = FakeNotifyRepository()
    tx = FakeTransactions(repo)
    mailer = FakeMailer()
    await handlers.on_events(tx.unit_of_work(), [delivery(committed("A-7"), 1)], Subscriptions(), ref_key=KEY)
    d = dispatcher(tx, mailer)
    assert await d.dispatch(mailer, 50) == 0
    repo.now += timedelta(seconds=SETTINGS.notify_decision_wait_s + 1)
    assert await d.dispatch(mailer, 50) == 1
    assert len(mailer.sent) == 1 and repo.of("sent")[0]["template"] == "grant.committed"


async def test_other_messages_do_not_wait_behind_a_grant_email_without_its_decision() -> None:
    repo = FakeNotifyRepository()
    tx = FakeTransactions(repo)
    mailer = FakeMailer()
    await handlers.on_events(tx.unit_of_work(), [delivery(committed("A-5"), 1)], Subscriptions(), ref_key=KEY)
    await handlers.on_events(tx.unit_of_work(), [delivery(decided("A-6"), 2)], Subscriptions(), ref_key=KEY)
    assert await dispatcher(tx, mailer).dispatch(mailer, 1) == 1  # a batch of one: the ineligible e-mail
    assert [r["template"] for r in repo.of("sent")] == ["eligibility.ineligible"]


def reduced(app: str) -> GrantReleased:
    return GrantReleased.model_validate(
        {
            "application_id": app,
            "grant_id": f"G-{app}",
            "released_at": NOW,
            "scheme": "vlaio.spearhead-cluster",
            "programme": "vlaio",
            "reason": "reduced",
            "released": [ReleasedAmount(budget_year=2020, fund="agency", amount=Money(amount_minor=40, currency="EUR"))],
            "remaining": [ScheduledAmount(budget_year=2020, amount=Money(amount_minor=60, currency="EUR"))],
        }
    )


def sent_templates(mailer: FakeMailer) -> list[str]:
    return [str(email.message_from_bytes(m.data, policy=email.policy.default)["Subject"]) for m in mailer.sent]


async def test_a_release_is_e_mailed_to_the_recipient_notify_kept_from_its_commitment_in_the_same_batch() -> None:
    repo = FakeNotifyRepository()
    tx = FakeTransactions(repo)
    mailer = FakeMailer()
    batch = [delivery(committed("A-3"), 1), delivery(reduced("A-3"), 2)]
    assert await handlers.on_events(tx.unit_of_work(), batch, Subscriptions(), ref_key=KEY) == 2
    release_row = next(r for r in repo.notifications.values() if r["template"] == "release.reduced")
    assert release_row["recipient_ref"] == recipient_ref("asa@example.org", KEY)  # the applicant's own reference
    assert await dispatcher(tx, mailer).dispatch(mailer, 50) == 1  # the grant e-mail waits for its decision
    assert sent_templates(mailer) == ["Application A-3: grant reduced by 0,40\u00a0€"]
    assert email.message_from_bytes(mailer.sent[0].data, policy=email.policy.default)["To"] == "asa@example.org"
    (sent,) = [json.loads(row.payload or b"{}") for row in tx.outbox]
    assert (sent["template"], sent["recipient_ref"]) == ("release.reduced", release_row["recipient_ref"])


async def test_a_release_consumed_before_its_commitment_waits_for_its_recipient() -> None:
    repo = FakeNotifyRepository()
    tx = FakeTransactions(repo)
    mailer = FakeMailer()
    await handlers.on_events(tx.unit_of_work(), [delivery(reduced("A-4"), 1)], Subscriptions(), ref_key=KEY)
    (row,) = repo.of("scheduled")
    assert row["recipient_ref"] == "grant:G-A-4"
    assert row["language"] == "en"  # nor the recipient's language yet
    d = dispatcher(tx, mailer)
    assert await d.dispatch(mailer, 50) == 0 and row["attempts"] == 0  # waits: no attempt counted
    dutch = committed("A-4").model_copy(update={"recipient": WHO.model_copy(update={"language": "nl"})})
    await handlers.on_events(tx.unit_of_work(), [delivery(dutch, 2)], Subscriptions(), ref_key=KEY)
    assert await d.dispatch(mailer, 50) == 1
    assert email.message_from_bytes(mailer.sent[0].data, policy=email.policy.default)["Content-Language"] == "nl"
    assert repo.notifications[row["notification_id"]]["status"] == "sent"
    # Its NotificationSent tells whom the e-mail went to and in which language, not what was planned.
    (sent,) = [json.loads(r.payload or b"{}") for r in tx.outbox]
    assert (sent["recipient_ref"], sent["language"]) == (recipient_ref("asa@example.org", KEY), "nl")


async def test_a_release_whose_recipient_comes_late_is_retried_and_sent_once_it_has_come() -> None:
    """Past the wait, an attempt without a recipient fails and is tried again with the e-mail's
    backoff (the GrantCommitted may be behind, on another topic): it goes out once that arrives."""
    repo = FakeNotifyRepository()
    tx = FakeTransactions(repo)
    mailer = FakeMailer()
    await handlers.on_events(tx.unit_of_work(), [delivery(reduced("A-5"), 1)], Subscriptions(), ref_key=KEY)
    d = dispatcher(tx, mailer)
    repo.now += timedelta(seconds=SETTINGS.notify_decision_wait_s + 1)
    assert await d.dispatch(mailer, 50) == 1
    (row,) = repo.of("scheduled")
    assert row["attempts"] == 1 and "no recipient known for this grant" in (row["last_error"] or "")
    assert await d.dispatch(mailer, 50) == 0  # not due again before its retry delay
    await handlers.on_events(tx.unit_of_work(), [delivery(committed("A-5"), 2)], Subscriptions(), ref_key=KEY)
    repo.now += timedelta(seconds=SETTINGS.notify_retry_cap_s + 1)
    assert await d.dispatch(mailer, 50) == 2  # the release and the commitment's own e-mail
    assert repo.of("dead") == [] and len(repo.of("sent")) == 2
    assert [m for m in sent_templates(mailer) if "reduced" in m] == ["Application A-5: grant reduced by 0,40\u00a0€"]


async def test_a_release_whose_recipient_never_comes_is_parked_for_an_operator_after_its_attempts() -> None:
    repo = FakeNotifyRepository()
    tx = FakeTransactions(repo)
    mailer = FakeMailer()
    await handlers.on_events(tx.unit_of_work(), [delivery(reduced("A-5"), 1)], Subscriptions(), ref_key=KEY)
    d = dispatcher(tx, mailer)
    assert await d.dispatch(mailer, 50) == 0  # waits for its recipient
    for attempt in range(1, SETTINGS.notify_max_attempts + 1):
        repo.now += timedelta(seconds=max(SETTINGS.notify_decision_wait_s, SETTINGS.notify_retry_cap_s) + 1)
        assert await d.dispatch(mailer, 50) == 1
        assert len(repo.of("dead")) == (attempt == SETTINGS.notify_max_attempts)
    (dead,) = repo.of("dead")
    assert dead["attempts"] == SETTINGS.notify_max_attempts
    assert mailer.sent == [] and tx.outbox == []
    assert "no recipient known for this grant" in dead["last_error"]


async def test_a_release_naming_another_applications_grant_is_told_to_nobody() -> None:
    repo = FakeNotifyRepository()
    tx = FakeTransactions(repo)
    mailer = FakeMailer()
    stray = reduced("A-7").model_copy(update={"grant_id": "G-A-6"})  # A-6's grant, in A-7's release
    # In one batch with A-6's own release: the recipient found for A-6 is not A-7's to use.
    batch = [delivery(committed("A-6"), 1), delivery(reduced("A-6"), 2), delivery(stray, 3)]
    await handlers.on_events(tx.unit_of_work(), batch, Subscriptions(), ref_key=KEY)
    stray_row = next(r for r in repo.notifications.values() if r["application_id"] == "A-7")
    assert stray_row["recipient_ref"] == "grant:G-A-6"  # not A-6's contact's reference
    d = dispatcher(tx, mailer)
    for _ in range(SETTINGS.notify_max_attempts):  # retried as a release still waiting for its recipient
        repo.now += timedelta(seconds=max(SETTINGS.notify_decision_wait_s, SETTINGS.notify_retry_cap_s) + 1)
        await d.dispatch(mailer, 50)
    assert [m for m in sent_templates(mailer) if "reduced" in m] == ["Application A-6: grant reduced by 0,40\u00a0€"]
    assert repo.notifications[stray_row["notification_id"]]["status"] == "dead"


async def test_a_ceiling_reset_forgets_the_recipients_of_its_programmes_grants_that_ended_before_its_year() -> None:
    repo = FakeNotifyRepository()
    tx = FakeTransactions(repo)
    other = committed("A-8").model_copy(update={"grant_id": "G-other"})
    other = other.model_copy(update={"grant": other.grant.model_copy(update={"programme": "ttc"})})
    await handlers.on_events(tx.unit_of_work(), [delivery(committed("A-6"), 1), delivery(other, 2)], Subscriptions(), ref_key=KEY)
    assert sorted(repo.recipients_by_grant) == ["G-A-6", "G-other"]  # both end in 2020

    def reset(programme: str, year: int) -> CeilingReset:
        return CeilingReset(reset_id=f"{programme}/{year}", programme=programme, budget_year=year, opened_at=NOW)

    await handlers.on_events(tx.unit_of_work(), [delivery(reset("vlaio", 2020), 3)], Subscriptions(), ref_key=KEY)
    assert sorted(repo.recipients_by_grant) == ["G-A-6", "G-other"]  # 2020 opens: its slices can still be capped
    await handlers.on_events(tx.unit_of_work(), [delivery(reset("vlaio", 2021), 4)], Subscriptions(), ref_key=KEY)
    assert sorted(repo.recipients_by_grant) == ["G-other"]  # another programme's year is its own


async def test_a_failed_send_counts_an_attempt_and_the_rest_of_the_batch_goes_out() -> None:
    repo = FakeNotifyRepository()
    tx = FakeTransactions(repo)
    mailer = FakeMailer()
    await handlers.on_events(tx.unit_of_work(), [delivery(decided(f"A-{i}"), i) for i in range(3)], Subscriptions(), ref_key=KEY)
    mailer.fail = 1
    assert await dispatcher(tx, mailer).dispatch(mailer, 50) == 3
    assert len(mailer.sent) == 2 and len(repo.of("sent")) == 2
    (failed,) = repo.of("scheduled")
    assert failed["attempts"] == 1 and "ConnectionRefusedError" in failed["last_error"]
    assert "asa@example.org" not in failed["last_error"]
    assert len(tx.outbox) == 2  # NotificationSent only for what went out


class SlowWebhooks:
    """A receiver that answers once `release` is set (or fails, with `fail`)."""

    def __init__(self, fail: bool = False) -> None:
        self.release = asyncio.Event()
        self.fail = fail
        self.sent: list[str] = []

    async def send(self, subscription: object, delivery_id: str, body: bytes, headers: dict[str, str]) -> int:
        await self.release.wait()
        if self.fail:
            raise ConnectionRefusedError("receiver down")
        self.sent.append(delivery_id)
        return 204


async def test_the_e_mails_of_a_batch_do_not_wait_for_its_webhooks() -> None:
    repo = FakeNotifyRepository()
    tx = FakeTransactions(repo)
    mailer = FakeMailer()
    hooks = SlowWebhooks()
    await handlers.on_events(tx.unit_of_work(), [delivery(decided(f"A-{i}"), i) for i in range(3)], SUBS, ref_key=KEY)
    d = handlers.Dispatcher(tx, SETTINGS, Catalog.load(), lambda: mailer, hooks, SUBS)  # type: ignore[arg-type]  # a fake receiver
    running = asyncio.create_task(d.dispatch(mailer, 50))
    for _ in range(100):
        if len(mailer.sent) == 3:
            break
        await asyncio.sleep(0.01)
    assert len(mailer.sent) == 3 and not running.done()  # every e-mail went out while the webhooks wait
    hooks.release.set()
    assert await running == 6
    assert len(hooks.sent) == 3 and len(repo.of("sent")) == 6 and len(tx.outbox) == 6


async def test_a_failed_webhook_is_recorded_beside_the_e_mails_that_went_out() -> None:
    repo = FakeNotifyRepository()
    tx = FakeTransactions(repo)
    mailer = FakeMailer()
    hooks = SlowWebhooks(fail=True)
    hooks.release.set()
    await handlers.on_events(tx.unit_of_work(), [delivery(decided(f"A-{i}"), i) for i in range(2)], SUBS, ref_key=KEY)
    d = handlers.Dispatcher(tx, SETTINGS, Catalog.load(), lambda: mailer, hooks, SUBS)  # type: ignore[arg-type]  # a fake receiver
    assert await d.dispatch(mailer, 50) == 4
    assert sorted(r["channel"] for r in repo.of("sent")) == ["email", "email"]
    failed = repo.of("scheduled")
    assert len(failed) == 2 and all(r["attempts"] == 1 and "ConnectionRefusedError" in r["last_error"] for r in failed)
    assert len(tx.outbox) == 2


def test_a_worker_claims_its_share_while_the_load_is_light_and_more_while_claims_come_back_full() -> None:
    # NOTIFY_DISPATCH_BATCH 20 over 8 workers: a share of 3.
    assert handlers.next_claim(3, 1, 20, 3) == 3  # light load: the rest is for the other workers
    assert handlers.next_claim(3, 3, 20, 3) == 6  # full: a backlog, claim more
    assert handlers.next_claim(12, 12, 20, 3) == 20  # never more than the batch
    assert handlers.next_claim(20, 20, 20, 3) == 20
    assert handlers.next_claim(20, 7, 20, 3) == 3  # the backlog is gone


class SlowMailer(FakeMailer):
    """An SMTP session that holds each message until `release` is set; counts messages in flight."""

    def __init__(self, flight: list[int]) -> None:
        super().__init__()
        self.release = asyncio.Event()
        self.flight = flight

    async def send(self, message: Composed) -> None:
        self.flight[0] += 1
        self.flight[1] = max(self.flight[1], self.flight[0])
        await self.release.wait()
        self.flight[0] -= 1
        await super().send(message)


@pytest.mark.parametrize("sessions", [1, 3])
async def test_the_e_mails_of_a_batch_go_out_at_once_over_the_free_smtp_sessions(sessions: int) -> None:
    repo = FakeNotifyRepository()
    tx = FakeTransactions(repo)
    flight = [0, 0]  # now, most at once
    mailers = [SlowMailer(flight) for _ in range(sessions)]
    pool = MailerPool(iter(mailers).__next__, sessions)
    await handlers.on_events(tx.unit_of_work(), [delivery(decided(f"A-{i}"), i) for i in range(3)], SUBS, ref_key=KEY)
    d = handlers.Dispatcher(tx, SETTINGS, Catalog.load(), lambda: FakeMailer(), None, SUBS)
    running = asyncio.create_task(d.dispatch(pool, 50))
    for _ in range(100):  # bounded: until as many are in flight as there are sessions
        if flight[0] == sessions:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    assert flight[0] == sessions  # one per session, the rest wait for a free one
    for mailer in mailers:
        mailer.release.set()
    assert await running == 6  # and the three webhooks (none configured here: parked)
    assert flight[1] == sessions and sum(len(m.sent) for m in mailers) == 3
    assert sorted(r["channel"] for r in repo.of("sent")) == ["email"] * 3


class RecordingWebhooks:
    def __init__(self) -> None:
        self.bodies: list[tuple[str, bytes]] = []

    async def send(self, subscription: object, delivery_id: str, body: bytes, headers: dict[str, str]) -> int:
        self.bodies.append((headers["ce-id"], body))
        return 204


async def test_each_event_of_a_batch_is_read_from_its_stored_copy_once_for_its_e_mail_and_webhooks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    two = Subscriptions.model_validate(
        {"subscriptions": [{**SUBS.subscriptions[0].model_dump(mode="json"), "id": name} for name in ("agency", "auditor")]}
    )
    repo = FakeNotifyRepository()
    tx = FakeTransactions(repo)
    mailer = FakeMailer()
    hooks = RecordingWebhooks()
    events = [decided(f"A-{i}") for i in range(3)]
    deliveries = [delivery(event, i) for i, event in enumerate(events)]
    await handlers.on_events(tx.unit_of_work(), deliveries, two, ref_key=KEY)
    read: list[str] = []
    event_of = handlers._event_of

    def counted(row: DueNotification) -> Event:
        read.append(row["source_event_id"])
        return event_of(row)

    monkeypatch.setattr(handlers, "_event_of", counted)
    d = handlers.Dispatcher(tx, SETTINGS, Catalog.load(), lambda: mailer, hooks, two)  # type: ignore[arg-type]  # a fake receiver
    assert await d.dispatch(mailer, 50) == 9
    assert sorted(read) == sorted(x.event_id for x in deliveries), "each stored event validated once"
    by_event = {x.event_id: x.event for x in deliveries}
    assert len(hooks.bodies) == 6
    for event_id, body in hooks.bodies:  # every webhook carries its own event, as the event serialises itself
        assert body == by_event[event_id].model_dump_json().encode()
    assert sorted(m.recipients[0] for m in mailer.sent) == ["asa@example.org"] * 3
    parsed = [email.message_from_bytes(m.data, policy=email.policy.default) for m in mailer.sent]
    assert len({m["X-Clustergrants-Notification"] for m in parsed}) == 3 and len(repo.of("sent")) == 9
