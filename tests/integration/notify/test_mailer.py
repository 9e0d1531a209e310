"""One SMTP session per worker, over a real SMTP server (aiosmtpd): kept across messages, opened again
when the server dropped it, and what arrives is what a mail client reads."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from services.notify.mail import Mailer, compose
from services.notify.render import Email
from services.notify.settings import NotifySettings
from tests.processes import free_port
from tests.smtp import Inbox

pytestmark = pytest.mark.integration


class CountingInbox(Inbox):
    """Counts the SMTP sessions that greeted it (one EHLO per connection)."""

    def __init__(self) -> None:
        super().__init__()
        self.sessions = 0

    async def handle_EHLO(self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]) -> list[str]:
        self.sessions += 1
        session.host_name = hostname
        return responses


def message(n: int) -> Email:
    return Email(
        template="t",
        language="sv",
        locale="sv_SE",
        subject=f"Inlämning S3-{n}: inte godtagen",
        text=f"Hej Åsa, nummer {n}",
        html=f"<p>Hej Åsa, nummer {n}</p>",
    )


async def test_one_session_is_kept_for_many_messages_and_reopened_after_a_drop() -> None:
    inbox = CountingInbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    mailer = Mailer(NotifySettings(smtp_host="127.0.0.1", smtp_port=port, smtp_timeout_s=5))
    try:
        for n in range(5):
            await mailer.send(compose(f"id-{n}", "noreply@clustergrants.invalid", "asa@example.se", message(n)))
        assert mailer.connections == 1 and inbox.sessions == 1
        controller.stop()  # the server goes away (a restart): the kept session is dead
        controller = Controller(inbox, hostname="127.0.0.1", port=port)
        controller.start()
        await mailer.send(compose("id-5", "noreply@clustergrants.invalid", "asa@example.se", message(5)))
        assert mailer.connections == 2 and inbox.sessions == 2
    finally:
        await mailer.close()
        controller.stop()
    assert [m["Subject"] for m in inbox.messages] == [f"Inlämning S3-{n}: inte godtagen" for n in range(6)]
    assert inbox.messages[5].get_body(("plain",)).get_content().strip() == "Hej Åsa, nummer 5"  # type: ignore[union-attr]


async def test_a_server_that_is_down_fails_the_send_and_the_next_send_connects_again() -> None:
    port = free_port()
    mailer = Mailer(NotifySettings(smtp_host="127.0.0.1", smtp_port=port, smtp_timeout_s=2))
    with pytest.raises(OSError, match=r"(?i)connect|refused"):
        await mailer.send(compose("id-x", "noreply@clustergrants.invalid", "asa@example.se", message(0)))
    inbox = CountingInbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        await asyncio.wait_for(
            mailer.send(compose("id-y", "noreply@clustergrants.invalid", "asa@example.se", message(1))), timeout=10
        )
    finally:
        await mailer.close()
        controller.stop()
    assert len(inbox.messages) == 1
