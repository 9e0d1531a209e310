"""A real SMTP server (aiosmtpd) and a real HTTP receiver (uvicorn + FastAPI) that verifies signatures."""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI, Request, Response

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


@dataclass
class Receiver:
    """Agency systems: `/<subscription>` answers 2xx when the signature verifies (else 401);
    `failures[path]` makes the next N requests to a path answer 503."""

    secrets: dict[str, bytes]
    port: int = 0
    deliveries: list[Delivery] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)
    refused: list[str] = field(default_factory=list)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}"

    def accepted(self, path: str) -> list[Delivery]:
        return [d for d in self.deliveries if d.path == path]


def verify_like_an_agency(secret: bytes, header: str, body: bytes, tolerance_s: int = 300) -> bool:
    """The verification snippet of services/notify/README.md, written out independently of notify's code."""
    fields: dict[str, str] = dict(part.split("=", 1) for part in header.split(","))  # type: ignore[misc]
    timestamp = int(fields["t"])
    if abs(time.time() - timestamp) > tolerance_s:
        return False
    expected = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, fields["v1"])


@pytest.fixture(scope="session")
def receiver() -> Iterator[Receiver]:
    state = Receiver(
        secrets={
            "ok": b"ok-secret-0123456789abcdef",
            "flaky": b"flaky-secret-0123456789abcdef",
            "down": b"down-secret-0123456789abcdef",
        }
    )
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
        header = headers.get("x-clustergrants-signature", "")
        verified = secret is not None and verify_like_an_agency(secret, header, body)
        state.deliveries.append(Delivery(path, headers, body, verified))
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
