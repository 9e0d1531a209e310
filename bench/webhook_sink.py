"""The benchmark's agency system: a minimal HTTP/1.1 receiver of notify's webhooks, as its own process.

    python -m bench.webhook_sink --port 40123 --stats stats.json   (secret in BENCH_HOOK_SECRET)

Every POST is checked as an agency would (the Standard Webhooks library's verifier, with the
subscription's secret) and answered 204, on kept-alive connections; on SIGTERM it writes what it
received to `--stats` (deliveries, distinct webhook ids, signatures that did not verify) and exits.
A process of its own so that the benchmark meters its CPU apart from notify's and the driver's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
from pathlib import Path

from standardwebhooks import Webhook, WebhookVerificationError

SECRET_ENV = "BENCH_HOOK_SECRET"  # noqa: S105 (a variable's name, not a secret)


class Sink:
    def __init__(self, secret: str) -> None:
        self.webhook = Webhook(secret)
        self.deliveries = 0
        self.ids: set[str] = set()
        self.bad_signatures = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                headers = {
                    k.strip().lower(): v.strip()
                    for k, _, v in (line.decode("latin-1").partition(":") for line in head.split(b"\r\n")[1:] if line)
                }
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                if "webhook-id" in headers:
                    self.deliveries += 1
                    self.ids.add(headers["webhook-id"])
                    try:
                        self.webhook.verify(body, headers)
                    except (WebhookVerificationError, ValueError, UnicodeDecodeError):
                        self.bad_signatures += 1
                writer.write(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()

    def stats(self) -> dict[str, int]:
        return {"deliveries": self.deliveries, "distinct_ids": len(self.ids), "bad_signatures": self.bad_signatures}


async def serve(port: int) -> Sink:
    sink = Sink(os.environ[SECRET_ENV])
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    server = await asyncio.start_server(sink.handle, "127.0.0.1", port)
    try:
        await stopping.wait()
    finally:
        server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 2)
    return sink


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--stats", type=Path, required=True)
    args = parser.parse_args()
    sink = asyncio.run(serve(args.port))
    args.stats.write_text(json.dumps(sink.stats()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
