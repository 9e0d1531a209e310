"""What notify tells whom, for which event. Pure: no I/O."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from shared.events import (
    ApplicationRejected,
    Contact,
    EligibilityDecided,
    Event,
    GrantCommitted,
    GrantRefused,
)


@dataclass(frozen=True)
class Planned:
    """One message to one recipient on one channel."""

    channel: str
    recipient_ref: str
    template: str
    language: str
    application_id: str | None
    subject: str
    text: str
    to: str


def recipient_ref(address: str) -> str:
    """An opaque, stable reference to a recipient: logs and events carry this, never the address."""
    return "email:" + hashlib.sha256(address.strip().lower().encode()).hexdigest()[:24]


def _email(template: str, contact: Contact, language: str, application_id: str | None, subject: str, text: str) -> Planned:
    return Planned("email", recipient_ref(contact.email), template, language, application_id, subject, text, contact.email)


def plan(event: Event) -> list[Planned]:
    """The messages an event causes: exactly one e-mail per outcome of an application."""
    if isinstance(event, EligibilityDecided):
        if event.outcome == "eligible" and event.proposed_grant is not None:
            return []  # the budget's answer (committed or refused) is the one to tell
        lines = [f"- {c.criterion}: {c.outcome} ({c.message_key})" for c in event.criteria]
        text = f"Application {event.application_id} ({event.scheme}): {event.outcome}.\n" + "\n".join(lines)
        return [_email(f"eligibility.{event.outcome}", event.recipient.contact, event.recipient.language,
                       event.application_id, f"Application {event.application_id}: {event.outcome}", text)]
    if isinstance(event, GrantCommitted):
        years = "\n".join(f"- {s.budget_year}: {s.amount}" for s in event.grant.schedule)
        text = f"Application {event.application_id}: a grant of {event.grant.total} is committed.\n{years}"
        return [_email("grant.committed", event.recipient.contact, event.recipient.language, event.application_id,
                       f"Application {event.application_id}: grant committed", text)]
    if isinstance(event, GrantRefused):
        text = f"Application {event.application_id}: eligible, but the budget cannot fund it ({event.message_key})."
        return [_email("grant.refused", event.recipient.contact, event.recipient.language, event.application_id,
                       f"Application {event.application_id}: not funded", text)]
    if isinstance(event, ApplicationRejected) and event.contact is not None:
        lines = [f"- {'.'.join(map(str, e.loc)) or '(body)'}: {e.message}" for e in event.errors]
        text = "Your submission could not be accepted:\n" + "\n".join(lines)
        return [_email("application.rejected", event.contact, event.language or "en", event.application_id,
                       "Submission not accepted", text)]
    return []
