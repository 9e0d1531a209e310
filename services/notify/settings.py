from __future__ import annotations

from pydantic import Field, SecretStr

from shared.settings import CommonSettings


class NotifySettings(CommonSettings):
    smtp_host: str = Field(default="127.0.0.1", description="SMTP server for applicant e-mail.")
    smtp_port: int = Field(default=38025)
    smtp_starttls: bool = Field(default=False, description="Upgrade the SMTP connection with STARTTLS.")
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    mail_from: str = Field(default="clustergrants <noreply@clustergrants.invalid>", description="From: of every e-mail.")
    notify_max_attempts: int = Field(default=8, ge=1, description="Send attempts before a notification is marked failed.")
