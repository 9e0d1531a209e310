"""E-mail over real SMTP (aiosmtplib): a plain-text and an HTML part."""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import formatdate

import aiosmtplib

from services.notify.render import Email
from services.notify.settings import NotifySettings


def message_id(notification_id: str) -> str:
    """Stable per notification: a resend after a crash carries the same Message-ID, so a mailbox can drop it."""
    return f"<{notification_id}@notify.clustergrants.invalid>"


def compose(notification_id: str, sender: str, to: str, email: Email) -> EmailMessage:
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
    message["Content-Language"] = email.language  # after the body: set_content drops Content-* headers
    return message


class Mailer:
    def __init__(self, settings: NotifySettings) -> None:
        self.settings = settings

    async def send(self, message: EmailMessage) -> None:
        s = self.settings
        await aiosmtplib.send(
            message,
            hostname=s.smtp_host,
            port=s.smtp_port,
            start_tls=s.smtp_starttls,
            username=s.smtp_username,
            password=s.smtp_password.get_secret_value() if s.smtp_password else None,
            timeout=s.smtp_timeout_s,
        )
