"""A real SMTP server (aiosmtpd) and a real HTTP receiver (uvicorn + FastAPI) that verifies signatures
with the Standard Webhooks library's own verifier, as an agency would."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI, Request, Response
from standardwebhooks import Webhook, WebhookVerificationError

from services.notify.webhooks import new_secret
from tests.processes import free_port
from tests.smtp import Inbox, smtp_server


@pytest.fixture(scope="session")
def smtp() -> Iterator[tuple[Inbox, int]]:
    with smtp_server() as server:
        yield server


@dataclass
class Delivery:
    path: str
    headers: dict[str, str]
    body: bytes
    verified: bool
    tamper_refused: bool
    """The same delivery with one byte of the body changed, or under another secret, did NOT verify."""


@dataclass
class Receiver:
    """Agency systems: `/<subscription>` answers 2xx when the signature verifies (else 401);
    `failures[path]` makes the next N requests to a path answer 503."""

    secrets: dict[str, str]
    """The secret each receiver verifies with (`whsec_...`)."""
    port: int = 0
    deliveries: list[Delivery] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)
    refused: list[str] = field(default_factory=list)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}"

    def accepted(self, path: str) -> list[Delivery]:
        return [d for d in self.deliveries if d.path == path]


def verify_like_an_agency(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """What the receiver's own code does: the library's verifier (id, timestamp within 5 minutes, signature)."""
    try:
        Webhook(secret).verify(body, headers)
    except (WebhookVerificationError, ValueError):
        return False
    return True


@pytest.fixture(scope="session")
def receiver() -> Iterator[Receiver]:
    state = Receiver(secrets={"ok": new_secret(), "flaky": new_secret(), "down": new_secret()})
    app = FastAPI()

    @app.post("/{path}")
    async def hook(path: str, request: Request) -> Response:
        body = await request.body()
        headers = {k.lower(): v for k, v in request.headers.items()}
        if state.failures.get(path, 0) > 0:
            state.failures[path] -= 1
            state.refused.append(path)
            return Response(status_code=503)
        secret = state.secrets.get(path)
        verified = secret is not None and verify_like_an_agency(secret, headers, body)
        tampered = body[:-1] + bytes([body[-1] ^ 1]) if body else b"x"
        tamper_refused = secret is not None and not (
            verify_like_an_agency(secret, headers, tampered) or verify_like_an_agency(new_secret(), headers, body)
        )
        state.deliveries.append(Delivery(path, headers, body, verified, tamper_refused))
        return Response(status_code=204 if verified else 401)

    state.port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=state.port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield state
    server.should_exit = True
    thread.join(timeout=10)


def parts(message: Any) -> dict[str, str]:
    """content type -> decoded text of a multipart message."""
    out: dict[str, str] = {}
    for part in message.walk():
        if part.get_content_maintype() == "text":
            out[part.get_content_type()] = part.get_payload(decode=True).decode(part.get_content_charset() or "utf-8")
    return out
