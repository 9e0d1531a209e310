"""A real SMTP server (aiosmtpd) that keeps what arrived, for tests to read."""

from __future__ import annotations

import email
import email.policy
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import EmailMessage

from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Message as MessageHandler

from tests.processes import free_port


class Inbox(MessageHandler):
    """Keeps every message that arrived over SMTP."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[EmailMessage] = []

    # (ignore below) aiosmtpd hands an EmailMessage (message_class)
    def handle_message(self, message: EmailMessage) -> None:  # type: ignore[override]
        # Re-read with the modern policy: headers decoded (RFC 2047), as a mail client shows them.
        self.messages.append(email.message_from_bytes(message.as_bytes(), policy=email.policy.default))


@contextmanager
def smtp_server() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()
