"""What notify tells whom, for which event, through which webhook subscription; when to try again. Pure: no I/O."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, StringConstraints, model_validator

from shared.events import (
    ApplicationRejected,
    CeilingReset,
    ClusterEvaluated,
    EligibilityDecided,
    Event,
    GrantCommitted,
    GrantRefused,
    GrantReleased,
    Language,
    Recipient,
)

Channel = Literal["email", "webhook"]
EnvName = Annotated[str, StringConstraints(pattern=r"^[A-Z][A-Z0-9_]{0,127}$")]


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or localhost."""
    if host.strip("[]").lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


#: Event types notify consumes; agency webhooks may subscribe to any of them.
CONSUMED_TYPES: tuple[str, ...] = tuple(
    e.cloudevents_type()
    for e in (
        EligibilityDecided,
        GrantCommitted,
        GrantRefused,
        GrantReleased,
        ApplicationRejected,
        CeilingReset,
        ClusterEvaluated,
    )
)

#: The releases an applicant is told of by e-mail. A revoked grant is told by its revised decision
#: (eligibility.revised.ineligible), a cluster not continued by its evaluation (cluster.discontinued).
RELEASES_EMAILED: tuple[str, ...] = ("withdrawn", "reduced", "capped")


class Subscription(BaseModel):
    """One agency system that wants events by webhook (Standard Webhooks). The secrets themselves
    are never in the file: it names the environment variables that hold them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$")]
    url: AnyHttpUrl = Field(description="https; plain http only for a loopback receiver marked `local`.")
    local: bool = Field(
        default=False, description="A receiver on this machine (tests, development): http on a loopback address allowed."
    )
    events: list[str] = Field(min_length=1, description="CloudEvents types, e.g. org.clustergrants.grant.committed.v1")
    secret_env: EnvName = Field(description="Name of the environment variable that holds the signing secret (whsec_...).")
    previous_secret_env: EnvName | None = Field(
        default=None,
        description="During a secret rotation: the variable of the secret being replaced; every delivery carries "
        "a signature under each, so receivers verify with either until the rotation is done.",
    )
    schemes: list[str] | None = Field(
        default=None, description="Only events of these schemes (events without a scheme always match)."
    )

    @model_validator(mode="after")
    def _https_unless_local(self) -> Subscription:
        if self.url.scheme == "https":
            return self
        if not self.local:
            raise ValueError(f"url must be https (plain http only for a loopback receiver with `local: true`): {self.url}")
        if not is_loopback(self.url.host or ""):
            raise ValueError(f"`local: true` is for loopback receivers only; {self.url.host} is not one")
        return self

    @model_validator(mode="after")
    def _two_different_secrets(self) -> Subscription:
        if self.previous_secret_env is not None and self.previous_secret_env == self.secret_env:
            raise ValueError("previous_secret_env must name another variable than secret_env")
        return self

    @property
    def secret_envs(self) -> tuple[str, ...]:
        """The variables of the active secrets, current first."""
        return (self.secret_env,) + ((self.previous_secret_env,) if self.previous_secret_env else ())

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
        return f"eligibility.{event.outcome}" if event.revision == 1 else f"eligibility.revised.{event.outcome}"
    if isinstance(event, ClusterEvaluated):
        return "cluster.continues" if event.continues else "cluster.discontinued"
    if isinstance(event, GrantCommitted):
        return "grant.committed"
    if isinstance(event, GrantRefused):
        return "grant.refused"
    if isinstance(event, ApplicationRejected) and event.contact is not None:
        return "application.rejected"
    if isinstance(event, GrantReleased) and event.reason in RELEASES_EMAILED:
        return f"release.{event.reason}"
    return None


def language_of(event: Event, recipient: Recipient | None = None) -> Language:
    """The language to write in: the event's recipient's, else `recipient`'s (a release's grant's)."""
    recipient = getattr(event, "recipient", None) or recipient
    if recipient is not None:
        return recipient.language
    if isinstance(event, ApplicationRejected) and event.language is not None:
        return event.language
    return "en"


def plan(event: Event, subscriptions: Subscriptions, *, ref_key: bytes, recipient: Recipient | None = None) -> list[Planned]:
    """Every message `event` causes: the applicant's e-mail, and one webhook per interested agency.
    `ref_key`: the key of `recipient_ref`. `recipient`: a GrantReleased's (it carries none), the one
    notify stored from the grant's GrantCommitted; None when not known yet: the e-mail is then planned
    to the grant (`grant:<grant id>`) and waits for it (NotifyRepository.claim_due)."""
    application_id = getattr(event, "application_id", None)
    language = language_of(event, recipient)
    planned: list[Planned] = []
    template = email_template(event)
    if template is not None:
        if isinstance(event, GrantReleased):
            ref = recipient_ref(recipient.contact.email, ref_key) if recipient else f"grant:{event.grant_id}"
        else:
            # Every other event email_template answers carries a recipient (Event, the union's base, does not).
            contact = event.contact if isinstance(event, ApplicationRejected) else event.recipient.contact  # type: ignore[attr-defined]
            assert contact is not None  # email_template answers a rejection only when it has a contact
            ref = recipient_ref(contact.email, ref_key)
        planned.append(Planned("email", ref, template, language, application_id))
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


# --- retries ------------------------------------------------------------------------------------


def retry_delay_s(attempts: int, base_s: float, cap_s: float, jitter: float = 1.0) -> float:
    """Exponential back-off after `attempts` failed attempts: base, 2 base, 4 base ... up to cap;
    `jitter` (0.5 to 1.0, drawn by the caller) spreads retries of many messages over time."""
    factor: int = 2 ** max(0, attempts - 1)
    return min(cap_s, base_s * factor) * jitter


EMAIL_PATTERN = re.compile(r"[^@\s<>\"',;:()\[\]]+@[^@\s<>\"',;:()\[\]]+")


def redact(text: str, *secrets: str) -> str:
    """An error text fit for logs and the dead-letter list: e-mail addresses and `secrets` removed."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    return EMAIL_PATTERN.sub("[address]", text)
