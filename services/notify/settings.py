from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr

from shared.settings import CommonSettings


class NotifySettings(CommonSettings):
    smtp_host: str = Field(default="127.0.0.1", description="SMTP server for applicant e-mail.")
    smtp_port: int = Field(default=28025)
    smtp_starttls: bool = Field(default=False, description="Upgrade the SMTP connection with STARTTLS.")
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_timeout_s: float = Field(default=15.0, gt=0)
    mail_from: str = Field(default="clustergrants <noreply@clustergrants.invalid>", description="From: header.")
    notify_recipient_ref_key: SecretStr | None = Field(
        default=None,
        description="Key of the opaque recipient references in logs and events (HMAC-SHA256 of the address), at least "
        "32 characters; notify refuses to start without it. Keep it stable: a new key gives every recipient a new reference.",
    )

    notify_max_attempts: int = Field(default=8, ge=1, description="E-mail send attempts before it is parked as dead.")
    notify_webhooks_file: Path | None = Field(
        default=None, description="YAML file of agency webhook subscriptions (none: no webhooks)."
    )
    notify_webhook_max_attempts: int = Field(default=10, ge=1, description="Webhook attempts before parking.")
    notify_webhook_timeout_s: float = Field(default=10.0, gt=0)
    notify_retry_base_s: float = Field(default=5.0, ge=0, description="First retry delay; doubles per attempt.")
    notify_retry_cap_s: float = Field(default=3600.0, ge=0, description="Longest retry delay.")
    notify_dispatch_workers: int = Field(
        default=4, ge=1, description="Workers claiming, sending and recording batches of due messages concurrently."
    )
    notify_smtp_sessions: int | None = Field(
        default=None,
        ge=1,
        description="SMTP sessions kept open and shared by the workers: the e-mails of a claimed batch go out at once "
        "over the free ones (unset: one per worker).",
    )
    notify_dispatch_batch: int = Field(
        default=20,
        ge=1,
        le=1000,
        description="Most due messages a worker claims, sends and records in one transaction (its share of it while "
        "claims come back short of full).",
    )
    notify_poll_interval_s: float = Field(default=0.5, gt=0, description="Idle workers' poll interval.")
    notify_decision_wait_s: float = Field(
        default=30.0,
        ge=0,
        description="How long a grant e-mail waits for its eligibility decision (to explain the criteria too), and "
        "a release e-mail for its grant's recipient (from the GrantCommitted; without it, it is parked as dead).",
    )
    notify_fault_exit_after_sends: int = Field(
        default=0, ge=0, description="Crash tests only: exit abruptly after the N-th send, before recording it."
    )

    @property
    def ref_key(self) -> bytes:
        """NOTIFY_RECIPIENT_REF_KEY's bytes (empty when unset: main() refuses to start then)."""
        key = self.notify_recipient_ref_key
        return key.get_secret_value().encode() if key is not None else b""
