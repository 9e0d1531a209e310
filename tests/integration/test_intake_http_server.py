"""The HTTP intake's edges over real sockets (issue 10): a huge chunked body stops at the limit, and while
PostgreSQL is away submissions get 503 with Retry-After and /readyz says not ready.

The body limit is checked twice: against the app in a uvicorn of this process (how many bytes reached
it), and against the intake service as a process (its peak resident set). PostgreSQL "goes away" by
cutting a TCP proxy between the intake process and the session's PostgreSQL (the server itself is
shared by the whole test session and stays up).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
import uvicorn

from services.intake.handlers import Outcome, Submission
from services.intake.http import DRAIN_MAX_BYTES, create_app
from shared.events import FieldError
from tests.conftest import fresh_database, fresh_topics
from tests.processes import ServiceProcesses, free_port

pytestmark = pytest.mark.integration

SAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "local" / "samples" / "ttc-voucher.json"
TOKEN = "server-test-token"
MIB = 2**20
CHUNK = b"[" + b'"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",' * 1985 + b'"x"]'  # ~64 KiB that looks like JSON


async def post_chunked(port: int, total: int, path: str = "/v1/applications", timeout_s: float = 60) -> tuple[str | None, int]:
    """POST `total` bytes with Transfer-Encoding: chunked over a raw socket, stopping when the server
    answers or closes; returns (status code, bytes sent before that)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"POST {path} HTTP/1.1\r\nHost: intake\r\nAuthorization: Bearer {TOKEN}\r\n"
        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
    )
    answer = asyncio.create_task(reader.read(65536))
    sent = 0
    deadline = time.monotonic() + timeout_s
    with contextlib.suppress(ConnectionError, OSError):
        while sent < total and not answer.done() and time.monotonic() < deadline:
            piece = CHUNK[: total - sent]
            writer.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            await writer.drain()
            sent += len(piece)
        if not answer.done():
            writer.write(b"0\r\n\r\n")
            await writer.drain()
    head = b""
    with contextlib.suppress(TimeoutError, ConnectionError):
        head = await asyncio.wait_for(answer, timeout=max(1.0, deadline - time.monotonic()))
    writer.close()
    with contextlib.suppress(Exception):
        await writer.wait_closed()
    status = head.split(b" ", 2)[1].decode() if head.startswith(b"HTTP/") else None
    return status, sent


# --- the app in a uvicorn of this process -----------------------------------------------------------


@pytest.fixture
async def counted_server() -> AsyncIterator[tuple[int, dict[str, int]]]:
    """A uvicorn serving the HTTP intake (1 MiB limit) that counts the body bytes the app received."""
    received = {"bytes": 0, "handled": 0, "before_answer": -1}

    async def receive(submission: Submission) -> Outcome:
        received["handled"] += 1
        return Outcome("received", "X", [])

    async def ready() -> bool:
        return True

    async def no_assessments(raw: bytes) -> list[FieldError]:
        return []

    app = create_app(receive, no_assessments, ready, [TOKEN], MIB)

    async def counting(scope: Any, receive_: Any, send: Any) -> None:
        async def counted() -> Any:
            message = await receive_()
            received["bytes"] += len(message.get("body", b""))
            return message

        async def answered(message: Any) -> None:
            if message["type"] == "http.response.start":
                received["before_answer"] = received["bytes"]
            await send(message)

        await app(scope, counted, answered)

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(counting, host="127.0.0.1", port=port, log_config=None, lifespan="off"))
    task = asyncio.create_task(server.serve())
    for _ in range(100):
        if server.started:
            break
        await asyncio.sleep(0.05)
    try:
        yield port, received
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=10)


async def test_a_chunked_body_stops_being_read_at_the_limit(counted_server: tuple[int, dict[str, int]]) -> None:
    port, received = counted_server
    status, sent = await post_chunked(port, 64 * MIB)
    assert status == "413"
    # Main read all 64 MiB before answering; now the app answers at the limit (plus what uvicorn had
    # buffered: at most one read of the socket), then drops a bounded amount (lingering close) and
    # closes the connection.
    assert received["before_answer"] <= MIB + 512 * 1024, received
    assert received["bytes"] <= MIB + DRAIN_MAX_BYTES + 512 * 1024, received
    assert sent < 32 * MIB, f"the client could send {sent / MIB:.1f} MiB before the answer"
    assert received["handled"] == 0


async def test_a_declared_length_over_the_limit_is_answered_before_the_body_is_sent(
    counted_server: tuple[int, dict[str, int]],
) -> None:
    port, received = counted_server
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"POST /v1/applications HTTP/1.1\r\nHost: intake\r\nAuthorization: Bearer {TOKEN}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {400 * MIB}\r\nExpect: 100-continue\r\n\r\n".encode()
    )
    head = await asyncio.wait_for(reader.read(65536), timeout=10)
    writer.close()
    assert head.startswith(b"HTTP/1.1 413"), head[:200]
    assert received["bytes"] == 0


# --- the intake service as a process, PostgreSQL behind a proxy we can cut -----------------------


class Proxy:
    """A TCP proxy on loopback to PostgreSQL; `cut()` drops every connection and stops listening."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = free_port()
        self.server: asyncio.Server | None = None
        self.links: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._link, "127.0.0.1", self.port)

    async def _link(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self.links |= {writer, up_writer}

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            sink.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self.links -= {writer, up_writer}

    async def cut(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()
        for link in list(self.links):
            link.transport.abort()
        self.links.clear()


@pytest.fixture(scope="module")
async def intake(kafka_bootstrap: str, run_id: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[dict[str, Any]]:
    async with fresh_database(f"cg_intake_http_{run_id}") as database_url:
        prefix = await fresh_topics(kafka_bootstrap, f"intake-http-{run_id}.")
        parts = urlsplit(database_url)
        proxy = Proxy(parts.hostname or "127.0.0.1", parts.port or 5432)
        await proxy.start()
        netloc = parts.netloc.rsplit("@", 1)
        via_proxy = urlunsplit(parts._replace(netloc=f"{netloc[0] + '@' if len(netloc) == 2 else ''}127.0.0.1:{proxy.port}"))
        http_port = free_port()
        env = {
            "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
            "DATABASE_URL": via_proxy,
            "TOPIC_PREFIX": prefix,
            "INTAKE_HTTP_PORT": str(http_port),
            "INTAKE_API_TOKENS": TOKEN,
            "INTAKE_RETRY_AFTER_S": "3",
            "INTAKE_REQUEST_TIMEOUT_S": "3",
            "OTEL_SDK_DISABLED": "true",
        }
        processes = ServiceProcesses(env, tmp_path_factory.mktemp("intake-http"))
        processes.start("intake")
        try:
            await asyncio.to_thread(processes.wait_started, 90)
            yield {
                "url": f"http://127.0.0.1:{http_port}",
                "port": http_port,
                "ops": f"http://127.0.0.1:{processes.ops_ports['intake']}",
                "proxy": proxy,
                "processes": processes,
            }
        finally:
            await asyncio.to_thread(processes.stop_all)
            with contextlib.suppress(Exception):
                await proxy.cut()


def application(app_id: str) -> bytes:
    document = json.loads(SAMPLE.read_text())
    document["application_id"] = app_id
    return json.dumps(document).encode()


def vm_hwm_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


async def test_the_intake_process_does_not_grow_with_a_huge_chunked_body(intake: dict[str, Any]) -> None:
    pid = intake["processes"].procs["intake"].pid
    before = vm_hwm_mib(pid)
    status, sent = await post_chunked(intake["port"], 200 * MIB)
    after = vm_hwm_mib(pid)
    assert status == "413"
    assert after - before < 32, f"peak RSS grew from {before:.0f} to {after:.0f} MiB (sent {sent / MIB:.0f} MiB)"


async def test_while_postgresql_is_away_submissions_get_503_with_retry_after(intake: dict[str, Any]) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    proxy: Proxy = intake["proxy"]
    async with httpx.AsyncClient(timeout=20) as http:
        before = await http.post(f"{intake['url']}/v1/applications", content=application("IT-PGAWAY-1"), headers=headers)
        assert before.status_code == 202, before.text
        await proxy.cut()
        try:
            away = await http.post(f"{intake['url']}/v1/applications", content=application("IT-PGAWAY-2"), headers=headers)
            ready = await http.get(f"{intake['ops']}/readyz")
        finally:
            await proxy.start()
        assert away.status_code == 503, away.text
        assert away.headers["retry-after"] == "3"
        assert away.json()["errors"][0]["type"] == "service_unavailable"
        assert ready.status_code == 503 and ready.json()["database"] is False
        # Back: the same submission goes through (the pool reconnects).
        deadline = time.monotonic() + 30
        again = away
        while again.status_code == 503 and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            again = await http.post(f"{intake['url']}/v1/applications", content=application("IT-PGAWAY-2"), headers=headers)
        assert again.status_code == 202, again.text
    log = intake["processes"].log("intake").read_text()
    assert '"database unavailable; asked to retry"' in log
