"""E-mail over real SMTP (aiosmtplib): the MIME bytes built directly, one connection kept per worker.

`compose` writes the message as bytes (RFC 5322 + MIME, RFC 2045-2047): a `multipart/alternative` with a
plain-text and an HTML part, each UTF-8 in base64; non-ASCII header text (a subject, a display name) in
RFC 2047 encoded words; every line CRLF-terminated and under 78 characters. A header value that holds
a CR or LF is refused (`HeaderInjection`): it could add a header or end the header block. Building the
bytes directly costs a fraction of `EmailMessage` composed and flattened (see README: Performance); the
tests read the result back with Python's `email` parser.

`Mailer` is one worker's SMTP session: connected on first use, kept for every later message, and opened
again when the server dropped it (a restart, an idle timeout) before the message is given up on.
"""

from __future__ import annotations

import asyncio
import base64
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import formatdate, getaddresses
from typing import Protocol

import aiosmtplib
import structlog

from services.notify.render import Email
from services.notify.settings import NotifySettings

log = structlog.get_logger("notify.mail")

CRLF = b"\r\n"
#: Raw UTF-8 bytes per encoded word: 39 bytes are 52 base64 characters, with "=?utf-8?b?" and "?=" 64;
#: after "Subject: " 73, under the 78 a line should keep to (a longer one is re-folded by relays).
_WORD_BYTES = 39
_ATOM = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~ .-]*$")


class HeaderInjection(ValueError):
    """A header value holds a CR or LF (or another control character): refused, never sent."""


@dataclass(frozen=True)
class Composed:
    """A message ready for SMTP: envelope sender, recipients and the message's bytes."""

    sender: str
    recipients: tuple[str, ...]
    data: bytes
    message_id: str


def message_id(notification_id: str) -> str:
    """Stable per notification: a resend after a crash carries the same Message-ID, so a mailbox can drop it."""
    return f"<{notification_id}@notify.clustergrants.invalid>"


def _checked(value: str) -> str:
    if any(c in value for c in "\r\n\0") or any(ord(c) < 32 and c != "\t" for c in value):
        raise HeaderInjection("a header value holds a line break or a control character")
    return value


def _encoded_words(text: str) -> list[str]:
    """RFC 2047 'B' encoded words of `text`, never splitting a UTF-8 character between two words."""
    words: list[str] = []
    chunk = bytearray()
    for char in text:
        raw = char.encode()
        if len(chunk) + len(raw) > _WORD_BYTES:
            words.append(f"=?utf-8?b?{base64.b64encode(chunk).decode()}?=")
            chunk.clear()
        chunk += raw
    if chunk or not words:
        words.append(f"=?utf-8?b?{base64.b64encode(chunk).decode()}?=")
    return words


def _unstructured(name: str, value: str) -> bytes:
    """`Name: value`, folded; non-ASCII values as encoded words (one per folded line)."""
    value = _checked(value)
    if value.isascii() and len(name) + 2 + len(value) <= 76 and "=?" not in value:
        return f"{name}: {value}".encode() + CRLF
    if value.isascii() and "=?" not in value:
        return _fold(name, value.split(" "))
    return f"{name}: ".encode() + "\r\n ".join(_encoded_words(value)).encode() + CRLF


def _fold(name: str, words: list[str]) -> bytes:
    lines: list[str] = []
    line = f"{name}:"
    for word in words:
        if len(line) + 1 + len(word) > 76 and line != f"{name}:":
            lines.append(line)
            line = ""
        line += " " + word
    lines.append(line)
    return "\r\n".join(lines).encode() + CRLF


def _mailbox(value: str) -> tuple[str, str]:
    """`(header text, bare address)` of `Name <addr>` or `addr`: a non-ASCII name as encoded words,
    an ASCII name with specials quoted; the address itself must be plain ASCII."""
    _checked(value)
    found = getaddresses([value])
    name, address = found[0] if len(found) == 1 else ("", "")
    local, at, domain = address.rpartition("@")
    if not (local and at and "." in domain) or not address.isascii() or any(c in address for c in ' <>()[],;:"\\'):
        raise ValueError("not an e-mail address this sender can write")
    if not name:
        return address, address
    if not name.isascii():
        return f"{' '.join(_encoded_words(name))} <{address}>", address
    if _ATOM.match(name):
        return f"{name} <{address}>", address
    quoted = name.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{quoted}" <{address}>', address


def _body(text: str) -> bytes:
    """UTF-8 in base64, 76 characters a line, CRLF."""
    return base64.encodebytes(text.encode()).replace(b"\n", CRLF)


def compose(notification_id: str, sender: str, to: str, email: Email, *, date: str | None = None) -> Composed:
    """The message's bytes: headers, then text and HTML as the two parts of a multipart/alternative."""
    from_header, from_address = _mailbox(sender)
    to_header, to_address = _mailbox(to)
    language = _checked(email.language)
    if not re.fullmatch(r"[A-Za-z]{1,8}(-[A-Za-z0-9]{1,8})*", language):
        raise HeaderInjection("Content-Language is not a language tag")
    mid = message_id(notification_id)
    boundary = f"=_cg_{uuid.uuid4().hex}"
    head = b"".join(
        (
            f"From: {from_header}".encode() + CRLF,
            f"To: {to_header}".encode() + CRLF,
            _unstructured("Subject", email.subject),
            f"Date: {date or formatdate(localtime=False, usegmt=True)}".encode() + CRLF,
            f"Message-ID: {_checked(mid)}".encode() + CRLF,
            f"X-Clustergrants-Notification: {_checked(notification_id)}".encode() + CRLF,
            b"Auto-Submitted: auto-generated" + CRLF,
            b"MIME-Version: 1.0" + CRLF,
            b"Content-Type: multipart/alternative;" + CRLF + f' boundary="{boundary}"'.encode() + CRLF,
            f"Content-Language: {language}".encode() + CRLF,
        )
    )
    delimiter = f"--{boundary}".encode()
    part_head = b"Content-Transfer-Encoding: base64" + CRLF + CRLF
    data = b"".join(
        (
            head,
            CRLF,
            delimiter + CRLF,
            b'Content-Type: text/plain; charset="utf-8"' + CRLF,
            part_head,
            _body(email.text),
            delimiter + CRLF,
            b'Content-Type: text/html; charset="utf-8"' + CRLF,
            part_head,
            _body(email.html),
            delimiter + b"--" + CRLF,
        )
    )
    return Composed(from_address, (to_address,), data, mid)


class MailSender(Protocol):
    """What a dispatcher worker sends with: `Mailer`, or a test's fake."""

    async def send(self, message: Composed) -> None: ...

    async def close(self) -> None: ...


class Mailer:
    """One SMTP session: kept open across messages, opened again when it was dropped; one message at
    a time (a second send waits for the first)."""

    def __init__(self, settings: NotifySettings) -> None:
        self.settings = settings
        self._client: aiosmtplib.SMTP | None = None
        self._one_at_a_time = asyncio.Lock()
        self.connections = 0  # opened so far (a test and the metrics read it)

    async def _connect(self) -> aiosmtplib.SMTP:
        s = self.settings
        client = aiosmtplib.SMTP(
            hostname=s.smtp_host,
            port=s.smtp_port,
            start_tls=s.smtp_starttls,
            username=s.smtp_username,
            password=s.smtp_password.get_secret_value() if s.smtp_password else None,
            timeout=s.smtp_timeout_s,
        )
        await client.connect()
        self.connections += 1
        return client

    async def send(self, message: Composed) -> None:
        """Send over the kept session; if the server dropped it, once more over a new one."""
        async with self._one_at_a_time:
            await self._send(message)

    async def _send(self, message: Composed) -> None:
        for attempt in (1, 2):
            fresh = self._client is None
            if self._client is None:
                self._client = await self._connect()
            try:
                await self._client.sendmail(message.sender, list(message.recipients), message.data)
                return
            except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPConnectError, ConnectionError, OSError) as error:
                await self.close()
                if fresh or attempt == 2:
                    raise
                log.info("SMTP session dropped; opening a new one", error=type(error).__name__)
            except aiosmtplib.SMTPRecipientsRefused:
                await self._reset()
                raise
            except aiosmtplib.SMTPResponseException:
                await self._reset()  # the server refused this message; the session stays usable
                raise

    async def _reset(self) -> None:
        """After a refused message: RSET, or a new session next time if even that fails."""
        if self._client is not None:
            try:
                await self._client.rset()
            except Exception:
                await self.close()

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                await client.quit()
            except Exception:
                client.close()


class MailerPool:
    """SMTP sessions shared by the dispatcher's workers: a send takes a free session (waiting for one
    when all are busy), so the e-mails of one claimed batch go out at once instead of one after the
    other over a single session, each round trip of which waits behind the process's other work."""

    def __init__(self, mailers: Callable[[], MailSender], size: int) -> None:
        self._all = [mailers() for _ in range(size)]
        self._free: asyncio.Queue[MailSender] = asyncio.Queue()
        for mailer in self._all:
            self._free.put_nowait(mailer)

    async def send(self, message: Composed) -> None:
        mailer = await self._free.get()
        try:
            await mailer.send(message)
        finally:
            self._free.put_nowait(mailer)

    async def close(self) -> None:
        for mailer in self._all:
            await mailer.close()
