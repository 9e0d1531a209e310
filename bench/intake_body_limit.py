"""Peak memory of the intake process under one huge chunked body with a valid token (issue 10).

    KAFKA_BOOTSTRAP_SERVERS=... DATABASE_URL=... python bench/intake_body_limit.py [--mib 400]

Starts the intake service alone on a fresh database and topic prefix, reads its peak resident set
(VmHWM) once it is up, then sends one POST /v1/applications with `Transfer-Encoding: chunked` and
no Content-Length, `--mib` MiB of JSON-looking bytes in 64 KiB chunks, over a raw socket so that
it can tell how much the server took before it answered. Prints the status, the bytes sent before
the answer (or the reset) and VmHWM before and after, in MiB. A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.harness import service_env  # noqa: E402
from tests.conftest import fresh_database, fresh_topics  # noqa: E402
from tests.processes import ServiceProcesses  # noqa: E402

TOKEN = "body-limit-token"  # noqa: S105  (a throw-away token of this run)
CHUNK = b"[" + b'"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",' * 1985 + b'"x"]'  # ~64 KiB of valid-looking JSON


def vm_hwm_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError("no VmHWM")


async def send_chunked(port: int, total: int, timeout_s: float) -> dict[str, object]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = (
        "POST /v1/applications HTTP/1.1\r\nHost: intake\r\n"
        f"Authorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    writer.write(head.encode())
    sent = 0
    answer: bytes = b""
    started = time.monotonic()

    async def read_answer() -> bytes:
        return await reader.read(65536)

    answering = asyncio.create_task(read_answer())
    error = None
    try:
        while sent < total and not answering.done() and time.monotonic() - started < timeout_s:
            piece = CHUNK[: total - sent]
            writer.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            await writer.drain()
            sent += len(piece)
        if not answering.done():
            writer.write(b"0\r\n\r\n")
            await writer.drain()
    except (ConnectionError, OSError) as failed:
        error = type(failed).__name__
    with contextlib.suppress(TimeoutError, ConnectionError):
        answer = await asyncio.wait_for(answering, timeout=max(1.0, timeout_s - (time.monotonic() - started)))
    writer.close()
    with contextlib.suppress(Exception):
        await writer.wait_closed()
    status = answer.split(b" ", 2)[1].decode() if answer.startswith(b"HTTP/") else None
    return {
        "status": status,
        "sent_mib_before_answer": round(sent / 2**20, 2),
        "client_error": error,
        "s": round(time.monotonic() - started, 2),
    }


async def main(args: argparse.Namespace) -> dict[str, object]:
    bootstrap, server = os.environ["KAFKA_BOOTSTRAP_SERVERS"], os.environ["DATABASE_URL"]
    name = f"cg_body_{os.getpid()}"
    async with fresh_database(name) as database_url:
        prefix = await fresh_topics(bootstrap, f"{name}.")
        env = service_env(bootstrap, database_url, prefix, 1, INTAKE_API_TOKENS=TOKEN, OTEL_SDK_DISABLED="true")
        env["DATABASE_URL"] = database_url
        with tempfile.TemporaryDirectory(prefix="cg-body-") as tmp:
            processes = ServiceProcesses(env, Path(tmp))
            processes.start("intake")
            try:
                await asyncio.to_thread(processes.wait_started, 120)
                pid = processes.procs["intake"].pid
                await asyncio.sleep(1)
                before = vm_hwm_mib(pid)
                result = await send_chunked(int(env["INTAKE_HTTP_PORT"]), args.mib * 2**20, args.timeout)
                await asyncio.sleep(1)
                after = vm_hwm_mib(pid)
                alive = processes.procs["intake"].poll() is None
            finally:
                await asyncio.to_thread(processes.stop_all)
    _ = server
    return {"body_mib": args.mib, **result, "vm_hwm_mib_before": before, "vm_hwm_mib_after": after, "intake_alive": alive}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=400)
    parser.add_argument("--timeout", type=float, default=120)
    report = asyncio.run(main(parser.parse_args()))
    print(json.dumps(report, indent=2))
