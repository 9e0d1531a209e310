"""The MIME bytes notify writes itself, read back the way a mail client reads them (Python's `email`
parser, modern and compat32 policies): headers decoded, both parts intact, no header injected."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage, Message

import pytest

from services.notify.mail import HeaderInjection, compose, message_id
from services.notify.render import Email

pytestmark = pytest.mark.unit

NID = "5f0c5a5e-3b44-4a57-9a8e-0d8e1b2c3d4e"


def mail(subject: str = "Application VLAIO-1: granted", text: str = "Hello,\nbye", html: str = "<p>Hello</p>") -> Email:
    return Email(template="grant.committed", language="en", locale="en_GB", subject=subject, text=text, html=html)


def parsed(data: bytes) -> EmailMessage:
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def test_a_message_reads_back_with_both_parts_and_every_header() -> None:
    sender = "clustergrants <noreply@clustergrants.invalid>"
    composed = compose(NID, sender, "jo@example.org", mail(), date="Fri, 01 Mar 2024 09:00:00 GMT")
    message = parsed(composed.data)
    assert message.defects == []
    assert message["From"] == "clustergrants <noreply@clustergrants.invalid>"
    assert message["To"] == "jo@example.org"
    assert message["Subject"] == "Application VLAIO-1: granted"
    assert message["Message-ID"] == message_id(NID) == composed.message_id
    assert message["X-Clustergrants-Notification"] == NID
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["Content-Language"] == "en"
    assert message["Date"].datetime.isoformat() == "2024-03-01T09:00:00+00:00"
    assert message.get_content_type() == "multipart/alternative"
    parts = list(message.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert parts[0].get_content() == "Hello,\nbye"
    assert parts[1].get_content() == "<p>Hello</p>"
    assert message.get_body(("plain",)) is parts[0]  # what a client shows as the text
    assert composed.sender == "noreply@clustergrants.invalid"
    assert composed.recipients == ("jo@example.org",)
    for line in composed.data.split(b"\r\n"):
        # RFC 5322: 998 at most, 78 should; a msg-id cannot be folded (no white space inside it).
        assert len(line) <= (998 if line.startswith(b"Message-ID:") else 78)
        assert b"\n" not in line and b"\r" not in line  # every line ends in CRLF, none in a bare LF


@pytest.mark.parametrize(
    "subject",
    [
        "Antrag VLAIO-1: Förderung von 900.000,00\u00a0€ bewilligt",
        "Inlämning S3-1: inte godtagen",
        "Søknad NIC-7: «Klynge» avslått – ærlig talt, det er en veldig lang emnelinje som må brettes over flere linjer",
        "申請 TTC-9 は受理されました 🎉",
        "ASCII only but long enough to need folding over more than one header line, clearly, yes indeed it is",
        "looks like =?utf-8?b?AAAA?= an encoded word",
    ],
)
def test_subjects_in_any_script_read_back_exactly(subject: str) -> None:
    data = compose(NID, "noreply@clustergrants.invalid", "jo@example.org", mail(subject=subject)).data
    assert data.isascii()
    assert parsed(data)["Subject"] == subject
    head = data.split(b"\r\n\r\n")[0]
    assert all(len(line) <= 78 for line in head.split(b"\r\n") if not line.startswith(b"Message-ID:"))
    # Relayed: parsed and written again with the compat32 policy (what aiosmtpd and many MTAs do).
    assert parsed(email.message_from_bytes(data).as_bytes())["Subject"] == subject
    # The old (compat32) parser and its decoder agree: what older clients do.
    legacy = email.message_from_bytes(data)
    decoded = "".join(
        part.decode(charset or "ascii") if isinstance(part, bytes) else part
        for part, charset in email.header.decode_header(legacy["Subject"])
    )
    assert decoded.replace("\r\n ", " ").replace("\r\n", "") in (subject, subject.replace(" ", ""))


def test_non_ascii_display_names_and_specials_are_encoded_or_quoted() -> None:
    data = compose(NID, "Agentschap Innoveren & Ondernemen <noreply@vlaio.invalid>", "Åsa Öberg <asa@example.se>", mail()).data
    message = parsed(data)
    assert message["To"].addresses[0].display_name == "Åsa Öberg"
    assert message["To"].addresses[0].addr_spec == "asa@example.se"
    assert message["From"].addresses[0].display_name == "Agentschap Innoveren & Ondernemen"
    assert message["From"].addresses[0].addr_spec == "noreply@vlaio.invalid"


def test_bodies_in_utf8_survive_the_transfer_encoding() -> None:
    text = "Bonjour Jo,\n✓ rempli: 5\u202f000,01\u00a0€\n" + "long line " * 40
    html = '<html lang="fr"><p>Demo &lt;Cluster&gt; — 5\u202f000,01\u00a0€</p></html>'
    message = parsed(compose(NID, "noreply@clustergrants.invalid", "jo@example.org", mail(text=text, html=html)).data)
    plain, rich = message.iter_parts()
    assert plain.get_content_charset() == "utf-8"
    assert plain.get_content() == text
    assert rich.get_content() == html


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("subject", "Granted\r\nBcc: everyone@example.org"),
        ("subject", "Granted\nBcc: everyone@example.org"),
        ("subject", "Granted\r\n\r\n<html>injected body"),
        ("to", "jo@example.org\r\nBcc: everyone@example.org"),
        ("to", "Jo\nBcc: x@example.org <jo@example.org>"),
        ("sender", "noreply@clustergrants.invalid\rX-Evil: 1"),
        ("language", "en\r\nX-Evil: 1"),
    ],
)
def test_line_breaks_in_header_values_are_refused(field: str, value: str) -> None:
    args = {"sender": "noreply@clustergrants.invalid", "to": "jo@example.org", "subject": "ok", "language": "en"}
    args[field] = value
    message = Email(template="t", language=args["language"], locale="en_GB", subject=args["subject"], text="x", html="<p>x</p>")
    with pytest.raises(HeaderInjection):
        compose(NID, args["sender"], args["to"], message)


def test_what_is_not_an_address_is_refused() -> None:
    for bad in ("", "not an address", "jø@exämple.org", "a@b.org, c@d.org"):
        with pytest.raises(ValueError, match="not an e-mail address"):
            compose(NID, "noreply@clustergrants.invalid", bad, mail())


def test_the_parts_are_the_only_parts() -> None:
    """A body line that looks like the boundary cannot end a part: the boundary is random and the bodies base64."""
    text = "--=_cg_\n--=_cg_0000--\nContent-Type: text/html\n"
    message: Message = parsed(compose(NID, "noreply@clustergrants.invalid", "jo@example.org", mail(text=text)).data)
    assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]  # type: ignore[attr-defined]
