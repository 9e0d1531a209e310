"""CPU per e-mail of notify's message composition, in one run: `EmailMessage` composed and flattened
(what notify did before) against the MIME bytes written directly (services/notify/mail.py), on the
same rendered e-mail (a German grant e-mail: non-ASCII subject, text and HTML parts).

    .venv/bin/python bench/mail_compose_bench.py [--messages 2000]

Prints the CPU microseconds per message of each (process CPU time, time.process_time) and the ratio.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.notify.i18n import Catalog
from services.notify.mail import compose, message_id
from services.notify.render import Email, render_email
from shared.events import Contact, FundShare, GrantCommitted, ProposedGrant, Recipient, ScheduledAmount
from shared.money import Money


def sample() -> Email:
    grant = ProposedGrant(
        programme="vlaio",
        instrument="coordination-subsidy",
        currency="EUR",
        schedule=[
            ScheduledAmount(budget_year=2020, amount=Money(amount_minor=40_000_000, currency="EUR")),
            ScheduledAmount(budget_year=2021, amount=Money(amount_minor=50_000_000, currency="EUR")),
        ],
        fund_shares=[FundShare(fund="agency", numerator=1, denominator=1)],
    )
    event = GrantCommitted(
        application_id="VLAIO-1",
        grant_id="G-1",
        committed_at=datetime(2024, 3, 1, 9, tzinfo=UTC),
        scheme="vlaio.spearhead-cluster",
        grant=grant,
        recipient=Recipient(
            language="de", contact=Contact(name="Jörg Müller", email="joerg@example.org"), organisation_name="Demo Cluster"
        ),
    )
    return render_email(Catalog.load(), event, None)


def email_message(notification_id: str, sender: str, to: str, email: Email) -> bytes:
    """The previous composition: EmailMessage with set_content/add_alternative, flattened to bytes."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = email.subject
    message["Date"] = formatdate(localtime=False, usegmt=True)
    message["Message-ID"] = message_id(notification_id)
    message["X-Clustergrants-Notification"] = notification_id
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(email.text)
    message.add_alternative(email.html, subtype="html")
    message["Content-Language"] = email.language
    return message.as_bytes()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    args = parser.parse_args()
    email = sample()
    sender, to = "clustergrants <noreply@clustergrants.invalid>", "joerg@example.org"
    results: dict[str, float] = {}

    def old(i: int) -> bytes:
        return email_message(f"id-{i}", sender, to, email)

    def new(i: int) -> bytes:
        return compose(f"id-{i}", sender, to, email).data

    builders: tuple[tuple[str, Callable[[int], bytes]], ...] = (("EmailMessage + as_bytes", old), ("direct MIME bytes", new))
    for name, build in builders:
        build(0)
        started = time.process_time()
        for i in range(args.messages):
            build(i)
        results[name] = (time.process_time() - started) / args.messages * 1e6
        print(f"{name:<26} {results[name]:8.1f} µs CPU per message ({args.messages} messages)")
    before, after = results.values()
    print(f"ratio: the direct bytes cost {after / before:.1%} of EmailMessage's CPU ({before / after:.1f}x less)")


if __name__ == "__main__":
    main()
