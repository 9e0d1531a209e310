"""E-mail over real SMTP (aiosmtplib)."""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import make_msgid

import aiosmtplib

from services.notify.settings import NotifySettings


class Mailer:
    def __init__(self, settings: NotifySettings) -> None:
        self.settings = settings

    async def send(self, notification_id: str, to: str, subject: str, text: str) -> None:
        message = EmailMessage()
        message["From"] = self.settings.mail_from
        message["To"] = to
        message["Subject"] = subject
        # The notification id in the Message-ID lets a mailbox drop the one possible duplicate.
        message["Message-ID"] = make_msgid(idstring=notification_id, domain="clustergrants.invalid")
        message["X-Clustergrants-Notification"] = notification_id
        message.set_content(text)
        s = self.settings
        await aiosmtplib.send(
            message,
            hostname=s.smtp_host,
            port=s.smtp_port,
            start_tls=s.smtp_starttls,
            username=s.smtp_username,
            password=s.smtp_password.get_secret_value() if s.smtp_password else None,
            timeout=15,
        )
