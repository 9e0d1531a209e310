"""`make chaos`: applications submitted while services are SIGKILLed and restarted, Kafka and PostgreSQL
restarted; then the invariants are checked from the database and the topics.

    python -m deploy.local.chaos                      # full: 10,000 applications, owns Kafka + PostgreSQL
    python -m deploy.local.chaos --small              # a few hundred, one SIGKILL of each service
    python -m deploy.local.chaos --external ...       # use KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL, no restarts

Full mode starts its own Kafka (KRaft) and PostgreSQL with deploy/local/stack.py's classes, on its own
ports and state folder (CLUSTERGRANTS_KAFKA_PORT / CLUSTERGRANTS_PG_PORT / CLUSTERGRANTS_STATE_DIR,
defaults 29192 / 26532 / .local/chaos), restarts the broker once (SIGKILL, by pid) and PostgreSQL once
(SIGQUIT: immediate shutdown, crash recovery on start), and stops both by pid at the end. Its broker
authenticates and authorizes like the stack's (users, passwords and ACLs of its own state folder);
every client of the run acts as its own principal (shared/acl.py).

Checked at the end (exit 1 on any violation): every valid application has exactly one decision, at
most one commitment (committed or refused, never both), exactly one notification per channel (e-mail,
and the webhook of the chaos agency subscription), every invalid one exactly one rejection and one
e-mail; every pot reconciles to the cent with its entries and none is negative or overspent; nothing
valid was dead-lettered; no personal data (the run's contact names and addresses) in any log line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import secrets
import signal
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402
from standardwebhooks import Webhook, WebhookVerificationError  # noqa: E402

from bench.harness import BENCH_PORTAL, Pipeline, Sent, Tracker, pipeline, producer, say  # noqa: E402
from bench.workload import Submission, submissions  # noqa: E402
from services.notify.webhooks import new_secret  # noqa: E402
from shared.cloudevents import portal_headers  # noqa: E402
from shared.events import ApplicationSubmitted  # noqa: E402
from shared.topics import Topic, topic_name  # noqa: E402
from tests.processes import SERVICES  # noqa: E402

TRACKED = (
    Topic.APPLICATION_RECEIVED,
    Topic.APPLICATION_REJECTED,
    Topic.ELIGIBILITY_DECIDED,
    Topic.GRANT_COMMITTED,
    Topic.GRANT_REFUSED,
    Topic.NOTIFICATION_SENT,
    Topic.DEAD_LETTER,
)
DECIDED_TYPE = "org.clustergrants.eligibility.decided.v1"
HOOK_SECRET = new_secret()  # Standard Webhooks (whsec_...), a new one per run


def tag(message: str) -> None:
    say("chaos", message)


# --- a webhook receiver (the agency system) ------------------------------------------------------


def _verifies(headers: dict[str, str], body: bytes) -> bool:
    """The agency's check, with the Standard Webhooks library's own verifier."""
    try:
        Webhook(HOOK_SECRET).verify(body, headers)
    except (WebhookVerificationError, ValueError, UnicodeDecodeError):
        return False
    return True


class Receiver:
    """A minimal HTTP/1.1 server that answers 204 to every POST and counts delivery ids."""

    def __init__(self) -> None:
        self.deliveries: Counter[str] = Counter()
        self.bad_signatures = 0  # signature does not verify with the subscription's secret
        self.tamper_accepted = 0  # the signature also verified a tampered body (must never happen)
        self.server: asyncio.base_events.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 5)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
                headers = {
                    k.strip().lower(): v.strip()
                    for k, _, v in (line.decode("latin-1").partition(":") for line in head.split(b"\r\n")[1:] if line)
                }
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                if "webhook-id" in headers:
                    self.deliveries[headers["webhook-id"]] += 1
                    if not _verifies(headers, body):
                        self.bad_signatures += 1
                    if _verifies(headers, body + b" "):
                        self.tamper_accepted += 1
                writer.write(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()


# --- infrastructure owned by the full run -------------------------------------------------------


class OwnInfra:
    """Kafka and PostgreSQL of deploy/local/stack.py on the chaos ports; restarted and stopped by pid."""

    def __init__(self) -> None:
        os.environ.setdefault("CLUSTERGRANTS_STATE_DIR", str(ROOT / ".local" / "chaos"))
        os.environ.setdefault("CLUSTERGRANTS_KAFKA_PORT", "29192")
        os.environ.setdefault("CLUSTERGRANTS_PG_PORT", "26532")
        from deploy.local import stack  # reads the ports and state folder above at import

        self.stack = stack
        # Kafka's jars: reuse the project's cached ones instead of resolving them from Maven Central again.
        cached = ROOT / ".local" / "kafka" / f"libs-{stack.KAFKA_VERSION}"
        own = stack.STATE / "kafka" / f"libs-{stack.KAFKA_VERSION}"
        if not (own / ".complete").exists() and (cached / ".complete").exists():
            import shutil

            shutil.rmtree(own, ignore_errors=True)
            shutil.copytree(cached, own)
        self.pg = stack.Postgres()
        self.kafka = stack.Kafka()

    def start(self) -> tuple[str, str]:
        self.pg.start()
        self.kafka.start()
        # Every client of the run (services, submitter, tracker) authenticates against this broker with
        # the credentials of its own state folder (deploy/local/kafka_users.py).
        os.environ.update(self.kafka.client_env())
        return self.kafka.bootstrap, self.pg.url

    def restart_kafka(self) -> float:
        started = time.monotonic()
        assert self.kafka.proc is not None
        tag(f"SIGKILL Kafka (pid {self.kafka.proc.pid}) and start it again")
        self.kafka.proc.send_signal(signal.SIGKILL)
        self.kafka.proc.wait(timeout=30)
        self.kafka.proc = None
        self.kafka.pidfile.unlink(missing_ok=True)
        time.sleep(2)
        self.kafka.start()
        return time.monotonic() - started

    def restart_postgres(self) -> float:
        started = time.monotonic()
        assert self.pg.proc is not None
        tag(f"SIGQUIT PostgreSQL (pid {self.pg.proc.pid}: immediate shutdown) and start it again")
        self.pg.proc.send_signal(signal.SIGQUIT)
        self.pg.proc.wait(timeout=60)
        self.pg.proc = None
        time.sleep(1)
        self.pg.start()
        return time.monotonic() - started

    def stop(self) -> None:
        for thing in (self.kafka, self.pg):
            with contextlib.suppress(Exception):
                thing.stop()


# --- the run ------------------------------------------------------------------------------------


@dataclass
class Plan:
    applications: int
    kills_per_service: int
    rate: float  # submissions per second
    restart_kafka: bool = False
    restart_postgres: bool = False
    seed: int = 7
    timeout_s: float = 900


@dataclass
class Report:
    figures: dict[str, Any] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)

    def violate(self, message: str) -> None:
        self.violations.append(message)


async def _submit_resilient(stack: Pipeline, items: list[Submission], rate: float, sent: dict[int, Sent], deadline: float) -> int:
    """Publish each submission once acknowledged (re-publish on a broker error: intake drops the copy)."""
    topic = topic_name(Topic.APPLICATION_SUBMITTED, stack.prefix)
    prod = producer(stack.bootstrap)
    await prod.start()
    retries = 0
    started = time.monotonic()
    try:
        for count, item in enumerate(items):
            delay = started + count / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            key = (item.application_id or f"malformed-{item.index}").encode()
            # One event id per submission: a resend after the broker came back is the same event.
            headers = portal_headers(ApplicationSubmitted, source=BENCH_PORTAL, event_id=f"submission-{item.index}")
            while True:
                try:
                    meta = await asyncio.wait_for(await prod.send(topic, item.body, key=key, headers=headers), 60)
                    sent[item.index] = Sent(item, meta.timestamp, f"{meta.topic}:{meta.partition}:{meta.offset}")
                    break
                except Exception as error:
                    retries += 1
                    if time.monotonic() > deadline or retries > 10_000:
                        raise
                    tag(f"submission {item.index} not acknowledged ({type(error).__name__}); publishing again")
                    await asyncio.sleep(1)
                    with contextlib.suppress(Exception):
                        await prod.stop()
                    prod = producer(stack.bootstrap)
                    with contextlib.suppress(Exception):
                        await prod.start()
    finally:
        with contextlib.suppress(Exception):
            await prod.stop()
    return retries


async def _chaos(stack: Pipeline, plan: Plan, infra: OwnInfra | None, done: asyncio.Event, figures: dict[str, Any]) -> None:
    """SIGKILL services at random moments (bounded), restart them; restart Kafka and PostgreSQL once."""
    rng = random.Random(plan.seed)
    events: list[Any] = [name for name in SERVICES for _ in range(plan.kills_per_service)]
    rng.shuffle(events)
    if plan.restart_kafka:
        events.insert(len(events) // 3, "kafka")
    if plan.restart_postgres:
        events.insert(2 * len(events) // 3, "postgres")
    expected_s = plan.applications / plan.rate
    gap = max(1.0, expected_s / (len(events) + 1))
    kills: Counter[str] = Counter()
    for what in events:  # every planned event happens (bounded); once all outcomes are in, without waiting
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), rng.uniform(0.5 * gap, 1.5 * gap))
        if what == "kafka" and infra is not None:
            figures["kafka_restart_s"] = round(await asyncio.to_thread(infra.restart_kafka), 1)
        elif what == "postgres" and infra is not None:
            figures["postgres_restart_s"] = round(await asyncio.to_thread(infra.restart_postgres), 1)
        else:
            tag(f"SIGKILL {what} (pid {stack.processes.procs[what].pid})")
            await asyncio.to_thread(stack.processes.kill, what)
            kills[what] += 1
            await asyncio.sleep(rng.uniform(0.2, 2.0))
            stack.processes.start(what)
    figures["sigkills"] = dict(kills)


async def _watch_crashes(stack: Pipeline, figures: dict[str, Any], stop: asyncio.Event) -> None:
    """A service that exits on its own (not killed by us) is restarted and counted."""
    crashes: Counter[str] = Counter()
    while not stop.is_set():
        for name, proc in list(stack.processes.procs.items()):
            if proc.poll() is not None:
                tag(f"{name} exited by itself with {proc.returncode}: restarting it")
                crashes[name] += 1
                stack.processes.procs.pop(name, None)
                stack.processes.start(name)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1)
    figures["unexpected_exits"] = dict(crashes)


async def _quiet(database_url: str, timeout: float) -> bool:
    """Outboxes empty and nothing left to send, twice in a row a few seconds apart."""
    deadline = time.monotonic() + timeout
    calm = 0
    while time.monotonic() < deadline:
        try:
            conn = await asyncpg.connect(database_url)
            try:
                busy = await conn.fetchval(
                    "SELECT (SELECT count(*) FROM intake.outbox) + (SELECT count(*) FROM eligibility.outbox)"
                    " + (SELECT count(*) FROM budget.outbox) + (SELECT count(*) FROM notify.outbox)"
                    " + (SELECT count(*) FROM notify.notifications WHERE status = 'scheduled')"
                )
            finally:
                await conn.close()
        except (OSError, asyncpg.PostgresError):
            busy = -1
        calm = calm + 1 if busy == 0 else 0
        if calm >= 3:
            return True
        await asyncio.sleep(2)
    return False


def _write_subscriptions(log_dir: Path, port: int) -> Path:
    log_dir.mkdir(parents=True, exist_ok=True)
    webhooks = log_dir / "webhooks.yaml"
    webhooks.write_text(
        json.dumps(
            {
                "subscriptions": [
                    {  # JSON is YAML
                        "id": "chaos-agency",
                        "url": f"http://127.0.0.1:{port}/hook",
                        "local": True,  # a loopback receiver: plain http allowed
                        "events": [DECIDED_TYPE],
                        "secret_env": "CHAOS_HOOK_SECRET",
                    }
                ]
            }
        )
    )
    return webhooks


async def run(bootstrap: str, server_url: str, plan: Plan, log_dir: Path, infra: OwnInfra | None = None) -> Report:
    report = Report()
    figures = report.figures
    run_id = "C" + secrets.token_hex(3)
    pii = secrets.token_hex(5)
    items = submissions(plan.applications, run_id, pii)
    receiver = Receiver()
    await receiver.start()
    webhooks = _write_subscriptions(log_dir, receiver.port)
    env = {
        "NOTIFY_WEBHOOKS_FILE": str(webhooks),
        "CHAOS_HOOK_SECRET": HOOK_SECRET,
        "NOTIFY_RETRY_BASE_S": "0.5",
        "NOTIFY_RETRY_CAP_S": "5",
        "NOTIFY_MAX_ATTEMPTS": "50",
        "NOTIFY_WEBHOOK_MAX_ATTEMPTS": "50",
        "NOTIFY_DECISION_WAIT_S": "2",
        "CONSUMER_BATCH_MAX": "200",
        "NOTIFY_DISPATCH_WORKERS": "8",
        "NOTIFY_POLL_INTERVAL_S": "0.2",
        "OUTBOX_POLL_INTERVAL_S": "0.2",
    }
    started = time.monotonic()
    deadline = started + plan.timeout_s
    try:
        # env holds service variables, never `maildir`, the one keyword of pipeline that is not a str
        async with (
            pipeline(bootstrap, server_url, log_dir, name=f"cg_chaos_{run_id.lower()}", **env) as stack,  # type: ignore[arg-type]
            Tracker(bootstrap, stack.prefix, TRACKED, keep=True) as tracker,
        ):
            sent: dict[int, Sent] = {}
            done = asyncio.Event()
            stop_watch = asyncio.Event()
            watcher = asyncio.create_task(_watch_crashes(stack, figures, stop_watch))
            chaos = asyncio.create_task(_chaos(stack, plan, infra, done, figures))
            figures["resubmissions"] = await _submit_resilient(stack, items, plan.rate, sent, deadline)
            figures["submitted_s"] = round(time.monotonic() - started, 1)
            tag(f"{len(sent):,} submitted in {figures['submitted_s']} s; waiting for every outcome")
            finished = await tracker.wait_all(sent.values(), max(30.0, deadline - time.monotonic()), "chaos")
            done.set()
            await chaos
            quiet = await _quiet(stack.database_url, max(30.0, deadline - time.monotonic()))
            await asyncio.sleep(3)  # the tracker reads what the last relays published
            stop_watch.set()
            await watcher
            figures["all_outcomes_seen"] = finished
            figures["quiet_at_end"] = quiet
            figures["elapsed_s"] = round(time.monotonic() - started, 1)
            await _check(stack, tracker, items, receiver, pii, report)
    finally:
        await receiver.stop()
    return report


async def _check(
    stack: Pipeline, tracker: Tracker, items: list[Submission], receiver: Receiver, pii: str, report: Report
) -> None:
    f = report.figures
    # Valid and invalid submissions always carry an id (only malformed ones have none).
    valid = {i.application_id for i in items if i.kind == "valid" and i.application_id is not None}
    invalid = {i.application_id for i in items if i.kind == "invalid" and i.application_id is not None}
    f["applications"] = {
        "valid": len(valid),
        "invalid": len(invalid),
        "malformed": sum(1 for i in items if i.kind == "malformed"),
    }

    def distinct(topic: Topic, key: str = "application_id") -> dict[str, set[str]]:
        """Per application: the distinct CloudEvents ids on `topic` (a re-sent copy has the same id)."""
        out: dict[str, set[str]] = defaultdict(set)
        for _ts, body, headers in tracker.records[topic]:
            if body.get(key):
                out[body[key]].add(headers.get("ce_id", ""))
        return out

    decided, committed, refused = (distinct(t) for t in (Topic.ELIGIBILITY_DECIDED, Topic.GRANT_COMMITTED, Topic.GRANT_REFUSED))
    rejected = distinct(Topic.APPLICATION_REJECTED)
    sent: dict[tuple[str, str], set[str]] = defaultdict(set)
    for _ts, body, _h in tracker.records[Topic.NOTIFICATION_SENT]:
        if body.get("application_id"):
            sent[(body["application_id"], body["channel"])].add(body["notification_id"])
    f["records_on_topics"] = {t.name.lower(): len(tracker.records[t]) for t in TRACKED}
    f["wire_duplicates"] = {
        t.name.lower(): len(tracker.records[t]) - len({h.get("ce_id") for _, _, h in tracker.records[t]})
        for t in TRACKED
        if t is not Topic.DEAD_LETTER
    }

    conn = await asyncpg.connect(stack.database_url)
    try:
        db_decisions = Counter(r[0] for r in await conn.fetch("SELECT application_id FROM eligibility.decisions"))
        db_grants = Counter(r[0] for r in await conn.fetch("SELECT application_id FROM budget.grants"))
        db_refusals = Counter(r[0] for r in await conn.fetch("SELECT application_id FROM budget.refusals"))
        db_notes = Counter(
            (r[0], r[1])
            for r in await conn.fetch(
                "SELECT application_id, channel FROM notify.notifications WHERE status = 'sent' AND application_id IS NOT NULL"
            )
        )
        db_open = await conn.fetchval("SELECT count(*) FROM notify.notifications WHERE status <> 'sent'")
        from services.budget import views as ledger

        problems = await ledger.reconcile(conn)
        negative = await conn.fetch(
            "SELECT pot_id, total_minor, committed_minor, released_minor FROM budget.pots"
            " WHERE committed_minor - released_minor < 0 OR total_minor - committed_minor + released_minor < 0"
        )
        pots = await conn.fetch(
            "SELECT p.pot_id, p.committed_minor - p.released_minor AS balance,"
            " coalesce(sum(e.amount_minor) FILTER (WHERE e.kind = 'commit'), 0)"
            " - coalesce(sum(e.amount_minor) FILTER (WHERE e.kind = 'release'), 0) AS entries"
            " FROM budget.pots p LEFT JOIN budget.entries e USING (pot_id) GROUP BY p.pot_id"
        )
        f["outcomes"] = dict(
            Counter(
                r[0]
                for r in await conn.fetch(
                    "SELECT outcome FROM eligibility.decisions WHERE application_id LIKE $1", f"{next(iter(valid))[:7]}%"
                )
            )
        )
    finally:
        await conn.close()
    f["grants_committed"] = sum(1 for a in valid if db_grants[a])
    f["grants_refused"] = sum(1 for a in valid if db_refusals[a])
    f["pots"] = len(pots)
    f["notifications_not_sent"] = db_open
    f["webhook_deliveries"] = {
        "distinct": len(receiver.deliveries),
        "posts": sum(receiver.deliveries.values()),
        "bad_signatures": receiver.bad_signatures,
        "tampered_accepted": receiver.tamper_accepted,
    }
    if receiver.bad_signatures or receiver.tamper_accepted:
        report.violate(
            f"webhook signatures: {receiver.bad_signatures} did not verify, {receiver.tamper_accepted} verified a tampered body"
        )

    def bad(what: str, ids: list[str]) -> None:
        if ids:
            report.violate(f"{len(ids)} {what}, e.g. {sorted(ids)[:5]}")

    bad("valid applications without exactly one decision (database)", [a for a in valid if db_decisions[a] != 1])
    bad("valid applications without exactly one decision (topic)", [a for a in valid if len(decided.get(a, ())) != 1])
    bad(
        "applications with more than one commitment or a commitment and a refusal",
        [a for a in valid if db_grants[a] + db_refusals[a] > 1 or len(committed.get(a, ())) + len(refused.get(a, ())) > 1],
    )
    bad("committed grants (database) not on the topic", [a for a in valid if db_grants[a] and len(committed.get(a, ())) != 1])
    for channel in ("email", "webhook"):
        bad(
            f"valid applications without exactly one {channel} notification (database)",
            [a for a in valid if db_notes[(a, channel)] != 1],
        )
        bad(
            f"valid applications without exactly one {channel} notification (topic)",
            [a for a in valid if len(sent.get((a, channel), ())) != 1],
        )
    bad("invalid submissions without exactly one rejection", [a for a in invalid if len(rejected.get(a, ())) != 1])
    bad("invalid submissions without exactly one e-mail", [a for a in invalid if len(sent.get((a, "email"), ())) != 1])
    bad("invalid submissions that were decided", [a for a in invalid if db_decisions[a]])
    if problems:
        report.violate(f"ledger does not reconcile: {problems[:5]}")
    if negative:
        report.violate(f"negative pots: {[dict(r) for r in negative]}")
    bad("pots whose balance differs from their entries", [r["pot_id"] for r in pots if r["balance"] != r["entries"]])
    dead = [h for _, _, h in tracker.records[Topic.DEAD_LETTER]]
    f["dead_letters"] = len(dead)
    if dead:
        report.violate(f"{len(dead)} records dead-lettered: {Counter(h.get('cg_dlt_error_type') for h in dead)}")
    # No personal data in any log line: every contact of this run carries `pii` in its name and address.
    lines = hits = 0
    for name in SERVICES:
        path = stack.processes.log(name)
        if path.exists():
            for line in path.read_text(errors="replace").splitlines():
                lines += 1
                if pii in line or re.search(r"[\w.+-]+@example\.org", line):
                    hits += 1
    f["log_lines"] = lines
    if hits:
        report.violate(f"{hits} log lines carry personal data")


def main() -> int:
    import logging

    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # the broker restart is expected: no connection noise
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="300 applications, one SIGKILL of each service")
    parser.add_argument("--applications", type=int)
    parser.add_argument("--kills-per-service", type=int)
    parser.add_argument("--rate", type=float, help="submissions per second (default: 40 full, 25 small)")
    parser.add_argument("--external", action="store_true", help="use KAFKA_BOOTSTRAP_SERVERS and DATABASE_URL; restart neither")
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--logs", type=Path, help="keep the service logs here")
    args = parser.parse_args()
    plan = Plan(
        applications=args.applications or (300 if args.small else 10_000),
        kills_per_service=args.kills_per_service or (1 if args.small else 3),
        rate=args.rate or (25 if args.small else 40),
        restart_kafka=not args.external,
        restart_postgres=not args.external,
        seed=args.seed,
        timeout_s=args.timeout,
    )
    tag(f"plan: {plan}")
    infra = None if args.external else OwnInfra()
    report: Report | None = None
    try:
        if infra is not None:
            bootstrap, server = infra.start()
            from deploy.local.stack import prepare
            from shared.acl import ADMIN

            prepare({**os.environ, **infra.kafka.client_env(ADMIN), "DATABASE_URL": server})
        else:
            bootstrap, server = os.environ["KAFKA_BOOTSTRAP_SERVERS"], os.environ["DATABASE_URL"]
        with tempfile.TemporaryDirectory(prefix="cg-chaos-") as tmp:
            log_dir = args.logs or Path(tmp)
            report = asyncio.run(run(bootstrap, server, plan, log_dir, infra))
    finally:
        if infra is not None:
            infra.stop()
    print(json.dumps(report.figures, indent=2, default=str))
    if report.violations:
        print(f"CHAOS RUN FAILED: {len(report.violations)} violation(s)")
        for v in report.violations:
            print(f"  - {v}")
        return 1
    print(f"chaos run ok: {plan.applications:,} applications, every invariant holds")
    return 0


if __name__ == "__main__":
    sys.exit(main())
