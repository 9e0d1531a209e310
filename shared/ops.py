"""Each service's operations endpoint: liveness, readiness and Prometheus metrics over plain HTTP.

    GET /healthz  200 while the process runs (Kubernetes livenessProbe)
    GET /readyz   200 when PostgreSQL and Kafka answer, else 503 (readinessProbe)
    GET /metrics  Prometheus text format

A deliberately small asyncio server: no framework for three read-only routes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

log = structlog.get_logger("ops")

Check = Callable[[], Awaitable[dict[str, bool]]]


class Metrics:
    """The delivery metrics every service exports, labelled by topic.

    No `service` label: the scrape target's labels say which service (and pod) a series comes from;
    a `service` label of our own would collide with the one Kubernetes scrape configurations set."""

    def __init__(self, service: str) -> None:
        self.registry = CollectorRegistry()
        labels = ["topic"]
        self.service = service
        self.consumed = Counter("clustergrants_messages_consumed", "Records consumed.", labels, registry=self.registry)
        self.processed = Counter("clustergrants_messages_processed", "Records processed.", labels, registry=self.registry)
        self.duplicates = Counter(
            "clustergrants_messages_duplicate",
            "Records whose event was already consumed (redeliveries).",
            labels,
            registry=self.registry,
        )
        self.retried = Counter("clustergrants_messages_retried", "Handler retries.", labels, registry=self.registry)
        self.rejected = Counter(
            "clustergrants_messages_rejected",
            "Records refused by the topic's contract: unreadable, or from a producer or of a type the topic does not allow.",
            ["topic", "kind", "reason"],
            registry=self.registry,
        )
        self.dead_lettered = Counter(
            "clustergrants_messages_dead_lettered", "Records parked on the dead-letter topic.", labels, registry=self.registry
        )
        self.redelivered = Counter(
            "clustergrants_batches_redelivered",
            "Consumed batches rolled back and read again (infrastructure away, or an error outside any handler).",
            ["topic", "cause"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "clustergrants_handling_seconds",
            "Time to handle one consumed batch, per record.",
            labels,
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.loop_lag = Histogram(
            "clustergrants_event_loop_lag_seconds",
            "How late the event loop ran a timer it was asked to run (sampled every LOOP_LAG_SAMPLE_S): the time "
            "every socket read, send and timeout of the process waited behind other work.",
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self.outbox_backlog = Gauge("clustergrants_outbox_backlog", "Outbox rows not yet published.", registry=self.registry)
        self.consumer_lag = Gauge(
            "clustergrants_consumer_lag", "Records behind the end of the topic.", labels, registry=self.registry
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)


class OpsServer:
    def __init__(
        self, host: str, port: int, ready: Check, metrics: Metrics, before_scrape: Callable[[], Awaitable[None]] | None = None
    ) -> None:
        self.host = host
        self.port = port
        self.ready = ready
        self.metrics = metrics
        self.before_scrape = before_scrape
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), timeout=2)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readline(), timeout=5)
            while (await asyncio.wait_for(reader.readline(), timeout=5)) not in (b"\r\n", b"\n", b""):
                pass  # headers: not needed
            parts = request.decode(errors="replace").split()
            path = parts[1].split("?")[0] if len(parts) >= 2 else ""
            status, content_type, body = await self._route(parts[0] if parts else "", path)
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
                f"Connection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()

    async def _route(self, method: str, path: str) -> tuple[str, str, bytes]:
        if method != "GET":
            return "405 Method Not Allowed", "text/plain", b"GET only\n"
        if path == "/healthz":
            return "200 OK", "application/json", b'{"status":"up"}'
        if path == "/readyz":
            try:
                checks = await asyncio.wait_for(self.ready(), timeout=5)
            except Exception:
                checks = {"checks": False}
            ok = all(checks.values())
            body = json.dumps({"status": "ready" if ok else "not ready", **checks}).encode()
            return ("200 OK" if ok else "503 Service Unavailable"), "application/json", body
        if path == "/metrics":
            if self.before_scrape is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self.before_scrape(), timeout=3)
            return "200 OK", CONTENT_TYPE_LATEST, self.metrics.render()
        return "404 Not Found", "text/plain", b"not found\n"
