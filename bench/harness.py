"""What the bench, the chaos run and the fuzz run share: the services as processes on a fresh database
and topic prefix, a local SMTP sink, a fast submitter and a tracker of outcomes on the topics.

Everything started here is stopped by process id (tests/processes.py, deploy/local/stack.py's stop_pid).
Kafka clients authenticate as the principal that may do what they do (shared/acl.py): submissions as
the tests' portal, outcomes read by the agency reader, dead letters by the operator.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.workload import Submission  # noqa: E402
from deploy.local.kafka_users import client_options  # noqa: E402
from shared.acl import producer_of, reader_of  # noqa: E402
from shared.cloudevents import portal_headers  # noqa: E402
from shared.events import (  # noqa: E402
    ApplicationRejected,
    ApplicationSubmitted,
    EligibilityDecided,
    GrantCommitted,
    GrantRefused,
)
from shared.topics import TOPIC_SPECS, Topic, topic_name  # noqa: E402
from tests.conftest import fresh_database, fresh_topics  # noqa: E402
from tests.processes import SERVICES, ServiceProcesses, free_port  # noqa: E402

T = TypeVar("T")


def run_stoppable(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(main)`, with SIGTERM (what stack.py sends its command, and `kill`) cancelling the run
    as Ctrl-C would: the harness's `finally` blocks then stop every process it started. Without it
    SIGTERM ended the Python process at once and left its service processes running."""

    async def guarded() -> T:
        task = asyncio.current_task()
        assert task is not None  # inside asyncio.run
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        return await main

    try:
        return asyncio.run(guarded())
    except asyncio.CancelledError:
        raise SystemExit(128 + signal.SIGTERM) from None


LOCAL = ROOT / "deploy" / "local"
#: The variable that holds the bench agency's webhook signing secret (notify signs, WebhookSink verifies).
WEBHOOK_SECRET_ENV = "BENCH_HOOK_SECRET"  # noqa: S105 (a variable's name, not a secret)
#: The CloudEvents source the benchmark and chaos runs publish submissions as, like an agency portal.
BENCH_PORTAL = "urn:clustergrants:bench-portal"


def say(tag: str, message: str) -> None:
    print(f"[{tag}] {message}", file=sys.stderr, flush=True)


def stop_pid(proc: subprocess.Popen[bytes], timeout: float = 10) -> None:
    """Stop one child of ours by its pid: SIGTERM, wait, SIGKILL."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


class SmtpSink:
    """aiosmtpd as a process of ours: `Sink` drops what it gets (bench), `Mailbox` keeps it (chaos)."""

    def __init__(self, log_dir: Path, maildir: Path | None = None) -> None:
        self.port = free_port()
        argv = [sys.executable, "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{self.port}"]
        if maildir is None:
            argv += ["-c", "aiosmtpd.handlers.Sink"]
        else:
            for sub in ("tmp", "new", "cur"):
                (maildir / sub).mkdir(parents=True, exist_ok=True)
            argv += ["-c", "aiosmtpd.handlers.Mailbox", str(maildir)]
        log_dir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(argv, cwd=ROOT, stdout=(log_dir / "smtp.log").open("ab"), stderr=subprocess.STDOUT)

    def stop(self) -> None:
        stop_pid(self.proc)


class WebhookSink:
    """bench/webhook_sink.py as a process of ours: the agency system that receives (and verifies) the
    webhooks of a subscription to every application outcome, written to `<log_dir>/webhooks.yaml`."""

    EVENTS = (
        EligibilityDecided.cloudevents_type(),
        GrantCommitted.cloudevents_type(),
        GrantRefused.cloudevents_type(),
        ApplicationRejected.cloudevents_type(),
    )

    def __init__(self, log_dir: Path) -> None:
        from services.notify.webhooks import new_secret

        self.port = free_port()
        self.secret = new_secret()
        log_dir.mkdir(parents=True, exist_ok=True)
        self.stats_file = log_dir / "webhook-sink.json"
        self.subscriptions = log_dir / "webhooks.yaml"
        subscription = {
            "id": "bench-agency",
            "url": f"http://127.0.0.1:{self.port}/hook",
            "local": True,  # a loopback receiver: plain http allowed
            "events": list(self.EVENTS),
            "secret_env": WEBHOOK_SECRET_ENV,
        }
        self.subscriptions.write_text(json.dumps({"subscriptions": [subscription]}))  # JSON is YAML
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.webhook_sink", "--port", str(self.port), "--stats", str(self.stats_file)],
            cwd=ROOT,
            env={**os.environ, WEBHOOK_SECRET_ENV: self.secret},
            stdout=(log_dir / "webhook-sink.log").open("ab"),
            stderr=subprocess.STDOUT,
        )

    def env(self) -> dict[str, str]:
        """What notify needs to deliver to it."""
        return {"NOTIFY_WEBHOOKS_FILE": str(self.subscriptions), WEBHOOK_SECRET_ENV: self.secret}

    def stop(self) -> dict[str, int]:
        """Stop it; what it received (deliveries, distinct webhook ids, signatures that did not verify)."""
        stop_pid(self.proc)
        with contextlib.suppress(OSError, ValueError):
            return dict(json.loads(self.stats_file.read_text()))
        return {}


def service_env(bootstrap: str, database_url: str, prefix: str, smtp_port: int, **extra: str) -> dict[str, str]:
    return {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "DATABASE_URL": database_url,
        "TOPIC_PREFIX": prefix,
        "INTAKE_HTTP_PORT": str(free_port()),
        "INTAKE_API_TOKENS": extra.pop("INTAKE_API_TOKENS", "bench-token"),
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(smtp_port),
        "BUDGET_POTS_FILE": str(LOCAL / "budget-pots.yaml"),
        "ELIGIBILITY_OPERATOR_PARAMETERS_FILE": str(LOCAL / "operator-parameters.yaml"),
        "HANDLER_RETRY_BACKOFF_S": "0.05",
        "NOTIFY_RETRY_BASE_S": "0.5",
        "NOTIFY_RETRY_CAP_S": "5",
        "OTEL_SDK_DISABLED": "true",
        **extra,
    }


@dataclass
class Pipeline:
    processes: ServiceProcesses
    env: dict[str, str]
    bootstrap: str
    database_url: str
    prefix: str
    log_dir: Path
    smtp: SmtpSink
    webhooks: WebhookSink | None = None
    webhook_stats: dict[str, int] = field(default_factory=dict)

    def pids(self) -> dict[str, int]:
        """The running services' process ids, the mail sink's and the webhook sink's (if any)."""
        sinks = {"mail sink": self.smtp.proc.pid}
        if self.webhooks is not None:
            sinks["webhook sink"] = self.webhooks.proc.pid
        return {**{name: proc.pid for name, proc in self.processes.procs.items()}, **sinks}

    @property
    def intake_url(self) -> str:
        return f"http://127.0.0.1:{self.env['INTAKE_HTTP_PORT']}"

    def peak_rss_mib(self) -> dict[str, float]:
        """VmHWM (peak resident set) of every running service, in MiB."""
        out: dict[str, float] = {}
        for name, proc in self.processes.procs.items():
            with contextlib.suppress(OSError, ValueError):
                for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        out[name] = round(int(line.split()[1]) / 1024, 1)
        return out


@contextlib.asynccontextmanager
async def pipeline(
    bootstrap: str,
    server_url: str,
    log_dir: Path,
    *,
    name: str,
    maildir: Path | None = None,
    replicas: int = 1,
    webhooks: bool = False,
    **extra: str,
) -> AsyncIterator[Pipeline]:
    """The services (`replicas` processes of each) on a fresh database `name` (on the server of
    `server_url`) and fresh topics; with `webhooks`, an agency subscribed to every application outcome
    (WebhookSink), whose figures are in `Pipeline.webhook_stats` once the block ends."""
    os.environ["DATABASE_URL"] = server_url  # tests.conftest.fresh_database reads the server from it
    async with fresh_database(name) as database_url:
        prefix = await fresh_topics(bootstrap, f"{name}.")
        smtp = SmtpSink(log_dir, maildir)
        hooks = WebhookSink(log_dir) if webhooks else None
        env = service_env(bootstrap, database_url, prefix, smtp.port, **(hooks.env() if hooks else {}), **extra)
        processes = ServiceProcesses(env, log_dir, replicas)
        stack = Pipeline(processes, env, bootstrap, database_url, prefix, log_dir, smtp, hooks)
        try:
            processes.start_all()
            await asyncio.to_thread(processes.wait_started, 120)
            yield stack
        finally:
            await asyncio.to_thread(processes.stop_all)
            smtp.stop()
            if hooks is not None:
                stack.webhook_stats = hooks.stop()


# --- submitting and tracking ---------------------------------------------------------------------


def producer(bootstrap: str) -> AIOKafkaProducer:
    """An agency portal's producer (the tests' portal principal): idempotent, acks=all, batching like the relays."""
    return AIOKafkaProducer(
        **client_options(producer_of(Topic.APPLICATION_SUBMITTED), bootstrap),
        enable_idempotence=True,
        acks="all",
        linger_ms=5,
        max_batch_size=256 * 1024,
        request_timeout_ms=30000,
    )


@dataclass
class Sent:
    submission: Submission
    timestamp_ms: int = 0
    position: str = ""


async def submit(
    prod: AIOKafkaProducer,
    topic: str,
    items: Iterable[Submission],
    sent: dict[int, Sent],
    rate: float | None = None,
    window: int = 2000,
) -> None:
    """Publish submissions (keyed by application id) as fast as the broker takes them, or at `rate` per s."""
    pending: list[tuple[Sent, asyncio.Future[Any]]] = []
    started = time.monotonic()

    async def drain() -> None:
        for record, future in pending:
            meta = await future
            record.timestamp_ms = meta.timestamp
            record.position = f"{meta.topic}:{meta.partition}:{meta.offset}"
        pending.clear()

    for count, item in enumerate(items):
        if rate:
            delay = started + count / rate - time.monotonic()
            if delay > 0:
                await drain()
                await asyncio.sleep(delay)
        key = (item.application_id or f"malformed-{item.index}").encode()
        record = sent[item.index] = Sent(item)
        # Each submission its own identity: indexes restart in every phase (warm-up, throughput, half
        # load), and the intake's inbox drops a second (source, id) as the duplicate it would be.
        headers = portal_headers(ApplicationSubmitted, source=BENCH_PORTAL, event_id=f"submission-{uuid.uuid4()}")
        pending.append((record, await prod.send(topic, item.body, key=key, headers=headers)))
        if len(pending) >= window:
            await drain()
    await drain()


@dataclass
class Tracker:
    """Reads the outcome topics of a prefix from the beginning: who got what, when (broker timestamps)."""

    bootstrap: str
    prefix: str
    topics: tuple[Topic, ...] = (Topic.NOTIFICATION_SENT, Topic.APPLICATION_REJECTED)
    done_at: dict[str, int] = field(default_factory=dict)  # application id or input position -> ms
    records: dict[Topic, list[tuple[int, dict[str, Any], dict[str, str]]]] = field(default_factory=lambda: defaultdict(list))
    keep: bool = False
    #: Intermediate topics whose records' broker timestamps are kept per application id (per-hop latency).
    hops: tuple[Topic, ...] = ()
    seen_at: dict[Topic, dict[str, int]] = field(default_factory=lambda: defaultdict(dict))
    dead_letters: list[tuple[int, int, bytes]] = field(default_factory=list)  # (partition, offset, value), when kept
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _consumers: list[AIOKafkaConsumer] = field(default_factory=list)

    async def __aenter__(self) -> Tracker:
        """One consumer per principal that may read some of the topics; partitions assigned, no group."""
        topics = tuple(dict.fromkeys(self.topics + self.hops))
        names = {topic_name(t, self.prefix): t for t in topics}
        self._names = names
        readers: dict[str, list[TopicPartition]] = defaultdict(list)
        for topic in topics:
            name = topic_name(topic, self.prefix)
            readers[reader_of(topic)] += [TopicPartition(name, p) for p in range(TOPIC_SPECS[topic].partitions)]
        for principal, partitions in readers.items():
            consumer = AIOKafkaConsumer(
                **client_options(principal, self.bootstrap),
                auto_offset_reset="earliest",
                enable_auto_commit=False,
                max_poll_records=2000,
            )
            await consumer.start()
            consumer.assign(partitions)
            self._consumers.append(consumer)
            self._tasks.append(asyncio.create_task(self._run(consumer)))
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for consumer in self._consumers:
            await consumer.stop()

    async def _run(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            try:
                batch = await consumer.getmany(timeout_ms=200, max_records=2000)
            except Exception as error:  # the broker restarting under a chaos run: keep reading
                say("tracker", f"read failed ({type(error).__name__}); retrying")
                await asyncio.sleep(1)
                continue
            for records in batch.values():
                for record in records:
                    self._record(self._names[record.topic], record)

    def _record(self, topic: Topic, record: Any) -> None:
        try:
            body = json.loads(record.value)
        except (TypeError, ValueError):
            body = {}
        if self.keep:
            headers = {k: v.decode(errors="replace") for k, v in record.headers}
            self.records[topic].append((record.timestamp, body, headers))
            if topic is Topic.DEAD_LETTER:
                self.dead_letters.append((record.partition, record.offset, record.value or b""))
        if topic in self.hops and body.get("application_id"):
            self.seen_at[topic].setdefault(body["application_id"], record.timestamp)
        if topic is Topic.NOTIFICATION_SENT and body.get("channel") == "email" and body.get("application_id"):
            self.done_at.setdefault(body["application_id"], record.timestamp)
        elif topic is Topic.APPLICATION_REJECTED and body.get("application_id") is None and body.get("source_reference"):
            self.done_at.setdefault(body["source_reference"], record.timestamp)

    def done(self, sent: Sent) -> int | None:
        """When `sent` got to its end: the applicant's e-mail went out, or (malformed input) its rejection."""
        key = sent.submission.application_id or sent.position
        return self.done_at.get(key)

    async def wait_all(self, sent: Iterable[Sent], timeout: float, tag: str = "bench") -> bool:
        items = list(sent)
        deadline = time.monotonic() + timeout
        last_report = 0.0
        while time.monotonic() < deadline:
            missing = sum(1 for s in items if self.done(s) is None)
            if not missing:
                return True
            if time.monotonic() - last_report > 10:
                say(tag, f"waiting: {len(items) - missing:,}/{len(items):,} done")
                last_report = time.monotonic()
            await asyncio.sleep(0.25)
        return False


def percentile(values: Sequence[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


SERVICE_NAMES = SERVICES
