from __future__ import annotations

from pydantic import Field, SecretStr

from services.intake.domain import DEFAULT_MAX_AMOUNT_MINOR, DEFAULT_MAX_CLOCK_SKEW
from shared.settings import CommonSettings


class IntakeSettings(CommonSettings):
    intake_http_host: str = Field(default="127.0.0.1", description="Address the HTTP intake listens on.")
    intake_http_port: int = Field(default=28080, description="Port of the HTTP intake.")
    intake_api_tokens: SecretStr = Field(
        default=SecretStr("dev-token"),
        description="Comma-separated bearer tokens accepted by the HTTP intake, one per agency portal, each "
        "`portal-name:token` (or a bare token, owned by `token:<its SHA-256 prefix>`); a portal reads the status "
        "of the applications it submitted only. RFC 6750 characters: letters, digits, -._~+/ and trailing =.",
    )
    intake_officer_tokens: SecretStr = Field(
        default=SecretStr(""),
        description="Comma-separated `officer-ref:token` entries: bearer tokens of case handlers (an agency back "
        "office), who list pending reviews (GET /v1/reviews), record findings and read any application's status. "
        "The officer reference is opaque (a staff number, never a name); empty: no officer access over HTTP.",
    )
    intake_max_body_bytes: int = Field(
        default=1_000_000, ge=1, description="Largest accepted HTTP body (Content-Length, or counted while it streams)."
    )
    intake_max_amount_minor: int = Field(
        default=DEFAULT_MAX_AMOUNT_MINOR,
        ge=0,
        description="Largest amount of money accepted in any Money field of a submission, in minor units (the "
        "default, 10,000,000,000.00, is a software bound that keeps the budget's sums in bigint, not a scheme figure).",
    )
    intake_max_clock_skew_s: int = Field(
        default=int(DEFAULT_MAX_CLOCK_SKEW.total_seconds()),
        ge=0,
        description="How many seconds a submission's submitted_at may be ahead of intake's clock.",
    )
    intake_retry_after_s: int = Field(
        default=5, ge=0, description="Retry-After of a 503 answer while PostgreSQL cannot be reached."
    )
    intake_request_timeout_s: float = Field(
        default=10.0, gt=0, description="Longest time one HTTP submission may wait for PostgreSQL before a 503."
    )
