from __future__ import annotations

from pydantic import Field, SecretStr

from shared.settings import CommonSettings


class IntakeSettings(CommonSettings):
    intake_http_host: str = Field(default="127.0.0.1", description="Address the HTTP intake listens on.")
    intake_http_port: int = Field(default=38080, description="Port of the HTTP intake.")
    intake_api_tokens: SecretStr = Field(
        default=SecretStr("dev-token"),
        description="Comma-separated bearer tokens accepted by the HTTP intake (one per agency portal).",
    )
    intake_max_body_bytes: int = Field(default=1_000_000, description="Largest accepted HTTP body.")
