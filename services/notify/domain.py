"""What notify tells whom, for which event; how a webhook is signed; when to try again. Pure: no I/O."""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, StringConstraints

from shared.events import (
    ApplicationRejected,
    CeilingReset,
    EligibilityDecided,
    Event,
    GrantCommitted,
    GrantRefused,
    Language,
)

Channel = Literal["email", "webhook"]

#: Event types notify consumes; agency webhooks may subscribe to any of them.
CONSUMED_TYPES: tuple[str, ...] = tuple(
    e.cloudevents_type() for e in (EligibilityDecided, GrantCommitted, GrantRefused, ApplicationRejected, CeilingReset)
)


class Subscription(BaseModel):
    """One agency system that wants events by webhook. The secret itself is never in the file."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$")]
    url: AnyHttpUrl
    events: list[str] = Field(min_length=1, description="CloudEvents types, e.g. org.clustergrants.grant.committed.v1")
    secret_env: Annotated[str, StringConstraints(pattern=r"^[A-Z][A-Z0-9_]{0,127}$")] = Field(
        description="Name of the environment variable that holds the HMAC secret."
    )
    schemes: list[str] | None = Field(
        default=None, description="Only events of these schemes (events without a scheme always match)."
    )

    def wants(self, event: Event) -> bool:
        if event.cloudevents_type() not in self.events:
            return False
        scheme = getattr(event, "scheme", None)
        return self.schemes is None or scheme is None or scheme in self.schemes


class Subscriptions(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    subscriptions: list[Subscription] = Field(default_factory=list)

    def model_post_init(self, _context: object) -> None:
        ids = [s.id for s in self.subscriptions]
        if len(set(ids)) != len(ids):
            raise ValueError("subscription ids must be unique")
        for s in self.subscriptions:
            unknown = set(s.events) - set(CONSUMED_TYPES)
            if unknown:
                raise ValueError(f"subscription {s.id}: unknown event types {sorted(unknown)}; known: {CONSUMED_TYPES}")

    def by_id(self, subscription_id: str) -> Subscription | None:
        return next((s for s in self.subscriptions if s.id == subscription_id), None)


@dataclass(frozen=True)
class Planned:
    """One message to one recipient on one channel (no content: it is rendered when sent)."""

    channel: Channel
    recipient_ref: str
    template: str
    language: Language
    application_id: str | None
    subscription_id: str | None = None

    def dedupe_key(self, source_event_id: str) -> str:
        return f"{source_event_id}:{self.channel}:{self.recipient_ref}"


#: Shortest accepted NOTIFY_RECIPIENT_REF_KEY, in characters.
MIN_REF_KEY_LENGTH = 32


def recipient_ref(address: str, key: bytes) -> str:
    """An opaque, stable reference to a recipient: logs and events carry this, never the address.

    A keyed HMAC-SHA256 of the normalised address under the operator's secret (NOTIFY_RECIPIENT_REF_KEY),
    truncated to 128 bits: without the key, a list of addresses cannot be hashed and matched against
    log lines. Changing the key changes every reference (old log lines then no longer match new ones).
    """
    if len(key) < MIN_REF_KEY_LENGTH:
        raise ValueError(f"the recipient reference key must be at least {MIN_REF_KEY_LENGTH} characters")
    return "email:" + hmac.new(key, address.strip().lower().encode(), hashlib.sha256).hexdigest()[:32]


def email_template(event: Event) -> str | None:
    """The applicant e-mail an event owes, if any: one per outcome of an application."""
    if isinstance(event, EligibilityDecided):
        if event.outcome == "eligible" and event.proposed_grant is not None:
            return None  # the budget's answer (committed or refused) is the one to tell
        return f"eligibility.{event.outcome}"
    if isinstance(event, GrantCommitted):
        return "grant.committed"
    if isinstance(event, GrantRefused):
        return "grant.refused"
    if isinstance(event, ApplicationRejected) and event.contact is not None:
        return "application.rejected"
    return None


def language_of(event: Event) -> Language:
    recipient = getattr(event, "recipient", None)
    if recipient is not None:
        return recipient.language  # type: ignore[no-any-return]
    if isinstance(event, ApplicationRejected) and event.language is not None:
        return event.language
    return "en"


def plan(event: Event, subscriptions: Subscriptions, *, ref_key: bytes) -> list[Planned]:
    """Every message `event` causes: the applicant's e-mail, and one webhook per interested agency.
    `ref_key`: the key of `recipient_ref`."""
    application_id = getattr(event, "application_id", None)
    language = language_of(event)
    planned: list[Planned] = []
    template = email_template(event)
    if template is not None:
        contact = event.contact if isinstance(event, ApplicationRejected) else event.recipient.contact  # type: ignore[attr-defined]
        planned.append(Planned("email", recipient_ref(contact.email, ref_key), template, language, application_id))
    for subscription in subscriptions.subscriptions:
        if subscription.wants(event):
            planned.append(
                Planned(
                    "webhook",
                    f"webhook:{subscription.id}",
                    f"webhook:{event.cloudevents_type()}",
                    language,
                    application_id,
                    subscription.id,
                )
            )
    return planned


# --- webhook signatures -------------------------------------------------------------------------

SIGNATURE_HEADER = "X-Clustergrants-Signature"
DELIVERY_HEADER = "X-Clustergrants-Delivery"


def signature(secret: bytes, timestamp: int, body: bytes) -> str:
    """Hex HMAC-SHA256 of `<timestamp>.<body>` under `secret`."""
    return hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()


def signature_header(secret: bytes, timestamp: int, body: bytes) -> str:
    """`t=<unix seconds>,v1=<hex hmac>`: the value of X-Clustergrants-Signature."""
    return f"t={timestamp},v1={signature(secret, timestamp, body)}"


def verify(secret: bytes, header: str, body: bytes, now: int, tolerance_s: int = 300) -> bool:
    """What a receiver does: recompute, compare in constant time, refuse stale timestamps (replays)."""
    parts: dict[str, list[str]] = {}
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        parts.setdefault(key, []).append(value)
    try:
        timestamp = int(parts["t"][0])
    except (KeyError, ValueError):
        return False
    if abs(now - timestamp) > tolerance_s:
        return False
    expected = signature(secret, timestamp, body)
    return any(hmac.compare_digest(expected, candidate) for candidate in parts.get("v1", []))


# --- retries ------------------------------------------------------------------------------------


def retry_delay_s(attempts: int, base_s: float, cap_s: float, jitter: float = 1.0) -> float:
    """Exponential back-off after `attempts` failed attempts: base, 2 base, 4 base ... up to cap;
    `jitter` (0.5 to 1.0, drawn by the caller) spreads retries of many messages over time."""
    return min(cap_s, base_s * 2 ** max(0, attempts - 1)) * jitter


EMAIL_PATTERN = re.compile(r"[^@\s<>\"',;:()\[\]]+@[^@\s<>\"',;:()\[\]]+")


def redact(text: str, *secrets: str) -> str:
    """An error text fit for logs and the dead-letter list: e-mail addresses and `secrets` removed."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    return EMAIL_PATTERN.sub("[address]", text)
