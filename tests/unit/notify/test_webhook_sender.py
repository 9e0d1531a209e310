"""The webhook sender against receivers that misbehave, each a real HTTP/1.1 server on loopback:
a redirect is not followed, a cookie is never sent back, a huge or endless answer is read only up to
RESPONSE_READ_BYTES, a receiver that never answers costs one timeout, and an ordinary receiver's
connection is kept for the next delivery."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest
from standardwebhooks import Webhook

from services.notify.domain import Subscription
from services.notify.webhooks import RESPONSE_READ_BYTES, WebhookFailed, WebhookSender, http_session, new_secret

pytestmark = pytest.mark.unit

SECRET = new_secret()
BODY = b'{"application_id":"VLAIO-2020-0042"}'


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Server:
    port: int = 0
    requests: list[Request] = field(default_factory=list)
    connections: int = 0

    def subscription(self, path: str = "hook", host: str = "127.0.0.1") -> Subscription:
        return Subscription.model_validate(
            {
                "id": "agency",
                "url": f"http://{host}:{self.port}/{path}",
                "local": True,
                "events": ["org.clustergrants.grant.committed.v1"],
                "secret_env": "HOOK_SECRET",
            }
        )


Answer = Callable[[Request, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def receiver(answer: Answer) -> AsyncIterator[Server]:
    state = Server()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        state.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                request = Request(lines[0].split(" ")[1], headers, body)
                state.requests.append(request)
                await answer(request, writer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    state.port = server.sockets[0].getsockname()[1]
    try:
        yield state
    finally:
        server.close()
        await server.wait_closed()


async def no_content(request: Request, writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")


async def send(server: Server, path: str = "hook", timeout_s: float = 5.0) -> int:
    async with http_session(timeout_s) as session:
        sender = WebhookSender(session, {"HOOK_SECRET": SECRET})
        return await sender.send(server.subscription(path), "delivery-1", BODY, {"ce-id": "42"})


async def test_a_delivery_is_signed_verifiable_and_its_connection_kept() -> None:
    async with receiver(no_content) as server, http_session(5.0) as session:
        sender = WebhookSender(session, {"HOOK_SECRET": SECRET})
        for n in range(3):
            assert await sender.send(server.subscription(), f"delivery-{n}", BODY, {"ce-id": str(n)}) == 204
    assert len(server.requests) == 3 and server.connections == 1
    for request in server.requests:
        assert request.body == BODY and request.headers["content-type"] == "application/json"
        Webhook(SECRET).verify(request.body, request.headers)  # raises if it does not verify
    assert [r.headers["ce-id"] for r in server.requests] == ["0", "1", "2"]


async def test_a_redirect_is_a_failed_attempt_and_is_not_followed() -> None:
    async def redirect(request: Request, writer: asyncio.StreamWriter) -> None:
        if request.path == "/hook":
            writer.write(b"HTTP/1.1 307 Temporary Redirect\r\nLocation: /elsewhere\r\nContent-Length: 0\r\n\r\n")
        else:
            await no_content(request, writer)

    async with receiver(redirect) as server:
        with pytest.raises(WebhookFailed, match="HTTP 307"):
            await send(server)
    assert [r.path for r in server.requests] == ["/hook"]


async def test_a_cookie_the_receiver_sets_is_never_sent_back() -> None:
    async def cookie(request: Request, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 204 No Content\r\nSet-Cookie: session=abc; Path=/\r\nContent-Length: 0\r\n\r\n")

    async with receiver(cookie) as server, http_session(5.0) as session:
        sender = WebhookSender(session, {"HOOK_SECRET": SECRET})
        # By name: a cookie jar keeps no cookie of a bare IP address, which would prove nothing.
        await sender.send(server.subscription(host="localhost"), "delivery-1", BODY, {})
        await sender.send(server.subscription("other", host="localhost"), "delivery-2", BODY, {})
    assert len(server.requests) == 2 and all("cookie" not in r.headers for r in server.requests)


async def test_a_huge_or_endless_answer_is_read_only_up_to_the_bound() -> None:
    async def endless(request: Request, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"x" * 65_536
        deadline = time.monotonic() + 20  # a sender that read it all would take 20 s; bounded either way
        for _ in range(200_000):
            if time.monotonic() > deadline:
                break
            writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            await writer.drain()

    async with receiver(endless) as server:
        started = time.monotonic()
        assert await send(server) == 200
    assert time.monotonic() - started < 5
    assert RESPONSE_READ_BYTES <= 1 << 20


async def test_a_receiver_that_never_answers_costs_one_timeout() -> None:
    async def silent(request: Request, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(30)

    async with receiver(silent) as server:
        started = time.monotonic()
        with pytest.raises(WebhookFailed, match="TimeoutError"):
            await send(server, timeout_s=0.5)
    assert time.monotonic() - started < 5


async def test_an_error_status_and_an_unreachable_receiver_fail_the_attempt() -> None:
    async def unavailable(request: Request, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy")

    async with receiver(unavailable) as server:
        with pytest.raises(WebhookFailed, match="HTTP 503"):
            await send(server)
        port = server.port
    closed = Server(port=port)  # nothing listens there any more
    with pytest.raises(WebhookFailed, match=r"ClientConnectorError|ClientOSError"):
        await send(closed)
