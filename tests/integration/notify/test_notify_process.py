"""Notify as a process on the real Kafka and PostgreSQL, with a real SMTP server and HTTP receiver:
e-mails in six languages, signed webhooks with retries and dead letters, exactly once, no PII in logs."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from services.notify.webhooks import new_secret
from shared.topics import Topic
from tests.integration.notify import events as ev
from tests.integration.notify.conftest import Receiver, parts
from tests.kafka_tools import Collector
from tests.processes import ROOT, ServiceProcesses
from tests.smtp import Inbox

pytestmark = pytest.mark.integration

RUN = uuid.uuid4().hex[:6]
# Distinctive personal data: the log search below must not find any of it.
PEOPLE = {
    "fr": ("Amélie Dupontel", f"amelie.dupontel.{RUN}@example.fr", "Liège Medtech SA"),
    "de": ("Jürgen Weißmüller", f"juergen.weissmueller.{RUN}@example.de", "Aachener Cluster e.V."),
    "nb": ("Kari Nordmannsen", f"kari.nordmannsen.{RUN}@example.no", "Havbruksklyngen AS"),
    "sv": ("Sven Svanholm", f"sven.svanholm.{RUN}@example.se", "Värmlands kluster AB"),
}


def env_for(database_url: str, kafka_bootstrap: str, topic_prefix: str, smtp_port: int, **extra: str) -> dict[str, str]:
    return {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "DATABASE_URL": database_url,
        "TOPIC_PREFIX": topic_prefix,
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(smtp_port),
        "HANDLER_RETRY_BACKOFF_S": "0.05",
        "NOTIFY_RETRY_BASE_S": "0.2",
        "NOTIFY_RETRY_CAP_S": "1",
        "NOTIFY_POLL_INTERVAL_S": "0.1",
        **extra,
    }


@pytest.fixture(scope="module")
async def notify(
    database_url: str,
    kafka_bootstrap: str,
    topic_prefix: str,
    smtp: tuple[Inbox, int],
    receiver: Receiver,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[ServiceProcesses]:
    directory = tmp_path_factory.mktemp("notify")
    webhooks = directory / "webhooks.yaml"
    all_types = [
        "org.clustergrants.eligibility.decided.v1",
        "org.clustergrants.grant.committed.v1",
        "org.clustergrants.grant.refused.v1",
        "org.clustergrants.application.rejected.v1",
        "org.clustergrants.budget.ceiling-reset.v1",
        "org.clustergrants.grant.released.v1",
    ]
    webhooks.write_text(
        json.dumps(
            {
                "subscriptions": [
                    {"id": "ok", "url": receiver.url("ok"), "local": True, "events": all_types, "secret_env": "HOOK_SECRET_OK"},
                    {  # in the middle of a secret rotation; this receiver still verifies with the previous secret
                        "id": "flaky",
                        "url": receiver.url("flaky"),
                        "local": True,
                        "events": ["org.clustergrants.grant.committed.v1"],
                        "secret_env": "HOOK_SECRET_FLAKY_NEW",
                        "previous_secret_env": "HOOK_SECRET_FLAKY",
                    },
                    {
                        "id": "down",
                        "url": receiver.url("down"),
                        "local": True,
                        "events": ["org.clustergrants.budget.ceiling-reset.v1"],
                        "secret_env": "HOOK_SECRET_DOWN",
                    },
                ]
            }
        )
    )  # JSON is YAML
    env = env_for(
        database_url,
        kafka_bootstrap,
        topic_prefix,
        smtp[1],
        NOTIFY_WEBHOOKS_FILE=str(webhooks),
        NOTIFY_WEBHOOK_MAX_ATTEMPTS="3",
        NOTIFY_DECISION_WAIT_S="20",
        HOOK_SECRET_OK=receiver.secrets["ok"],
        HOOK_SECRET_FLAKY_NEW=new_secret(),
        HOOK_SECRET_FLAKY=receiver.secrets["flaky"],
        HOOK_SECRET_DOWN=receiver.secrets["down"],
    )
    processes = ServiceProcesses(env, directory)
    processes.start("notify")
    try:
        await asyncio.to_thread(processes.wait_started, 60)
        yield processes
    finally:
        await asyncio.to_thread(processes.stop_all)


def cli(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.notify.cli", "dead-letters", *args],
        cwd=ROOT,
        capture_output=True,
        stdin=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "DATABASE_URL": database_url, "CLUSTERGRANTS_OPERATOR": "notify-test"},
        timeout=60,
        check=False,
    )


async def test_every_outcome_is_told_once_by_email_and_signed_webhook_without_pii_in_logs(
    notify: ServiceProcesses,
    kafka_bootstrap: str,
    topic_prefix: str,
    database_url: str,
    smtp: tuple[Inbox, int],
    receiver: Receiver,
) -> None:
    inbox = smtp[0]
    fr, de, nb = (ev.person(lang, *PEOPLE[lang]) for lang in ("fr", "de", "nb"))
    ids = {k: f"IT-{k}-{RUN}" for k in ("fr", "de", "nb", "sv")}
    receiver.failures["flaky"] = 2  # two 503s, then accepted: third and last attempt
    receiver.failures["down"] = 1000  # never, until an operator steps in
    async with Collector(kafka_bootstrap, topic_prefix, [Topic.NOTIFICATION_SENT]) as seen:
        # Grant committed BEFORE its eligibility decision arrives: the e-mail waits for the decision.
        sources = [await ev.publish(kafka_bootstrap, topic_prefix, ev.committed(ids["de"], de))]
        sources.append(await ev.publish(kafka_bootstrap, topic_prefix, ev.eligible_with_grant(ids["de"], de)))
        first = ev.ineligible(ids["fr"], fr)
        first_id = await ev.publish(kafka_bootstrap, topic_prefix, first)
        sources += [
            first_id,
            await ev.publish(kafka_bootstrap, topic_prefix, ev.refused(ids["nb"], nb)),
            await ev.publish(kafka_bootstrap, topic_prefix, ev.rejected(ids["sv"], *PEOPLE["sv"][:2])),
            await ev.publish(kafka_bootstrap, topic_prefix, ev.reset(f"prog-{RUN}", 2025)),
        ]
        await ev.publish(kafka_bootstrap, topic_prefix, first, event_id=first_id)  # a redelivery: same id

        def sent() -> list[dict[str, object]]:
            return [b for b in seen.bodies(Topic.NOTIFICATION_SENT) if b["source_event_id"] in sources]

        # 4 e-mails; webhooks: ok x6, flaky x1 (after two failures); "down" is parked.
        await seen.wait_for(lambda: len(sent()) >= 11, timeout=90, what="11 NotificationSent")
        await seen.wait_for(lambda: len(receiver.refused) >= 5, timeout=30, what="three attempts at 'down'")

        # The operator lists the dead letter (no address in it) and redelivers it once the receiver is back.
        await asyncio.sleep(1.5)
        listed = cli(database_url, "list", "--json", "--channel", "webhook")
        assert listed.returncode == 0, listed.stderr
        dead = [d for d in json.loads(listed.stdout) if d["subscription_id"] == "down"]
        assert len(dead) == 1
        assert dead[0]["attempts"] == 3
        assert dead[0]["last_error"] == "WebhookFailed: HTTP 503"
        receiver.failures["down"] = 0
        again = cli(database_url, "redeliver", dead[0]["notification_id"], "--yes")
        assert again.returncode == 0, again.stderr
        conn = await asyncpg.connect(database_url)
        try:  # audited in notify's schema, in the transaction that queued it again
            audited = await conn.fetch(
                "SELECT operator, outcome, changes::text AS changes FROM notify.audit WHERE arguments->'ids' ? $1",
                dead[0]["notification_id"],
            )
        finally:
            await conn.close()
        assert [(r["operator"], r["outcome"]) for r in audited] == [("notify-test", "queued")]
        assert json.loads(audited[0]["changes"]) == {"queued": [dead[0]["notification_id"]]}
        await seen.wait_for(lambda: len(sent()) >= 12, timeout=30, what="NotificationSent of the redelivered webhook")
        twice = cli(database_url, "redeliver", dead[0]["notification_id"], "--yes")  # no longer dead: refused
        assert twice.returncode == 2 and "not a dead letter" in twice.stderr and len(twice.stderr.splitlines()) == 1
        await asyncio.sleep(2)  # anything duplicated would show up now

        notifications = sent()
    by_channel = sorted((n["channel"], n["recipient_ref"]) for n in notifications)
    assert len(notifications) == 12, by_channel
    assert len({n["notification_id"] for n in notifications}) == 12
    assert all("@" not in str(n["recipient_ref"]) for n in notifications)
    emails_sent = [n for n in notifications if n["channel"] == "email"]
    assert sorted(str(n["template"]) for n in emails_sent) == [
        "application.rejected",
        "eligibility.ineligible",
        "grant.committed",
        "grant.refused",
    ]

    # E-mails: one per application, to the contact, in their language, with text and HTML parts.
    expected_subjects = {
        "fr": f"Demande {ids['fr']} : non recevable",
        "de": f"Antrag {ids['de']}: Förderung von 900.000,00\u00a0€ bewilligt",
        "nb": f"Søknad {ids['nb']}: kvalifisert, men ikke finansiert",
        "sv": f"Inlämning {ids['sv']}: inte godtagen",
    }
    for lang, app_id in ids.items():
        mails = [m for m in inbox.messages if app_id in m["Subject"]]
        assert len(mails) == 1, (lang, [m["Subject"] for m in mails])
        mail = mails[0]
        assert mail["To"] == PEOPLE[lang][1]
        assert mail["Subject"] == expected_subjects[lang]
        assert mail["Content-Language"] == lang
        body = parts(mail)
        assert set(body) == {"text/plain", "text/html"}
        assert PEOPLE[lang][0] in body["text/plain"]
    de_text = parts(next(m for m in inbox.messages if ids["de"] in m["Subject"]))["text/plain"]
    assert "- 2020: 400.000,00\u00a0€" in de_text
    assert "Der Aufruf war am 1. Oktober 2019 geöffnet." in de_text  # the decision arrived after, was waited for
    fr_text = parts(next(m for m in inbox.messages if ids["fr"] in m["Subject"]))["text/plain"]
    assert "✗ non rempli: La demande de 5\u202f000,01\u00a0€ dépasse le montant du chèque" in fr_text

    # Webhooks: every delivery verified by the receiver; one per (event, subscription); CloudEvents headers.
    mine = [d for d in receiver.deliveries if d.headers.get("ce-id") in sources]
    assert mine and all(d.verified and d.tamper_refused for d in mine)
    ok = [d for d in receiver.accepted("ok") if d.headers["ce-id"] in sources]
    assert sorted(d.headers["ce-id"] for d in ok) == sorted(sources)
    for delivery in ok:
        assert delivery.headers["ce-specversion"] == "1.0"
        assert delivery.headers["webhook-id"] in {str(n["notification_id"]) for n in notifications}
        assert json.loads(delivery.body)  # the event itself
    flaky = [d for d in receiver.accepted("flaky") if d.headers["ce-id"] in sources]
    assert len(flaky) == 1 and len(flaky[0].headers["webhook-signature"].split(" ")) == 2  # new and previous secret
    assert len([d for d in receiver.accepted("down") if d.headers["ce-id"] in sources]) == 1

    # Nothing personal in any log line of the whole run.
    logs = notify.log("notify").read_text(encoding="utf-8", errors="replace")
    assert '"notification sent"' in logs
    assert '"recipient_ref": "email:' in logs
    for name, email, _org in PEOPLE.values():
        for needle in (name, email, email.split("@")[0]):
            assert needle not in logs, f"personal data in the logs: {needle!r}"
            assert json.dumps(name)[1:-1] not in logs  # also not JSON-escaped


async def test_a_withdrawn_or_reduced_grant_is_told_to_its_recipient_and_a_revoked_one_to_agencies_only(
    notify: ServiceProcesses,
    kafka_bootstrap: str,
    topic_prefix: str,
    database_url: str,
    smtp: tuple[Inbox, int],
    receiver: Receiver,
) -> None:
    """GrantReleased carries no contact: notify tells the recipient it kept from the GrantCommitted, in
    their language, and forgets it once the programme's next budget year after the grant's last opens."""
    inbox = smtp[0]
    name, address = f"Marie Lefèvre {RUN}", f"marie.lefevre.{RUN}@example.be"
    who = ev.person("fr", name, address, "Cluster Wallonie-Bruxelles ASBL")
    app = f"IT-release-{RUN}"
    commitment = ev.committed(app, who).model_copy(
        update={"grant": ev.vlaio_grant().model_copy(update={"programme": f"prog-rel-{RUN}"})}
    )
    async with Collector(kafka_bootstrap, topic_prefix, [Topic.NOTIFICATION_SENT]) as seen:
        committed_id = await ev.publish(kafka_bootstrap, topic_prefix, commitment)
        reduced_id = await ev.publish(kafka_bootstrap, topic_prefix, ev.released(commitment, "reduced"))
        revoked_id = await ev.publish(kafka_bootstrap, topic_prefix, ev.released(commitment, "revoked"))
        ids = {reduced_id, revoked_id}

        def sent() -> list[dict[str, object]]:
            return [b for b in seen.bodies(Topic.NOTIFICATION_SENT) if b["source_event_id"] in ids]

        # The reduction: its e-mail and a webhook; the revocation: a webhook only (its revised decision tells).
        await seen.wait_for(lambda: len(sent()) >= 3, timeout=60, what="3 NotificationSent of the releases")
        await asyncio.sleep(1.5)  # anything more would show up now
        notifications = sent()
    assert sorted((n["source_event_id"] == reduced_id, n["channel"], n["template"]) for n in notifications) == [
        (False, "webhook", "webhook:org.clustergrants.grant.released.v1"),
        (True, "email", "release.reduced"),
        (True, "webhook", "webhook:org.clustergrants.grant.released.v1"),
    ]
    email_sent = next(n for n in notifications if n["channel"] == "email")
    assert str(email_sent["recipient_ref"]).startswith("email:") and email_sent["language"] == "fr"
    mails = [m for m in inbox.messages if app in m["Subject"] and "réduite" in m["Subject"]]
    assert len(mails) == 1
    assert mails[0]["To"] == address
    assert mails[0]["Subject"] == f"Demande {app} : subvention réduite de 500\u202f000,00\u00a0€"
    text = parts(mails[0])["text/plain"]
    assert f"Bonjour {name}," in text and "- 2020: 400\u202f000,00\u00a0€" in text
    ok = {d.headers["ce-id"] for d in receiver.accepted("ok") if d.headers["ce-id"] in ids}
    assert ok == ids

    conn = await asyncpg.connect(database_url)
    try:
        kept = await conn.fetchval("SELECT count(*) FROM notify.grant_recipients WHERE grant_id = $1", commitment.grant_id)
        assert kept == 1
        await ev.publish(kafka_bootstrap, topic_prefix, ev.reset(f"prog-rel-{RUN}", 2022))  # after its last year, 2021
        for _ in range(100):
            kept = await conn.fetchval("SELECT count(*) FROM notify.grant_recipients WHERE grant_id = $1", commitment.grant_id)
            if kept == 0:
                break
            await asyncio.sleep(0.1)
        assert kept == 0, "the recipient of an ended grant was not forgotten"
    finally:
        await conn.close()
    assert committed_id  # its own e-mail waits for its decision, which this test does not send

    logs = notify.log("notify").read_text(encoding="utf-8", errors="replace")
    for needle in (name, address, address.split("@")[0]):
        assert needle not in logs, f"personal data in the logs: {needle!r}"
