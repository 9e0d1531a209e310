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
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402
import yaml  # noqa: E402
from standardwebhooks import Webhook, WebhookVerificationError  # noqa: E402

from bench.harness import BENCH_PORTAL, Pipeline, Sent, Tracker, pipeline, producer, run_stoppable, say  # noqa: E402
from bench.workload import SAMPLES, Submission, submission  # noqa: E402
from services.eligibility.competition import S3_CRITERIA  # noqa: E402
from services.notify.webhooks import new_secret  # noqa: E402
from shared.acl import CONSUMES  # noqa: E402
from shared.cloudevents import portal_headers  # noqa: E402
from shared.events import ApplicationSubmitted, AssessmentSubmitted  # noqa: E402
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
    Topic.GRANT_RELEASED,
    Topic.CEILING_RESET,
    Topic.CALL_CLOSED,
    Topic.AUDIT_RECORDED,
)
DECIDED_TYPE = "org.clustergrants.eligibility.decided.v1"
#: The S3 pilot's competitive call every s3.platform application of the run applies to; the operator
#: closes it after the assessors have scored those decided eligible by then (`plan.operator`).
CALL_ID = "s3-2018"
#: The yearly maximum the run's operator opens Hermes 2018 with (EUR 600,000; a chaos figure, not a
#: document's): every cluster pact committed by then asks EUR 1,000,000 for 2018, so the opening caps
#: each (a GrantReleased, reason capped, and its e-mail); those decided later ask more than it for the
#: open year and are refused (`yearly-maximum:vlaio.hermes/2018`).
HERMES_2018_MAXIMUM_MINOR = 60_000_000
S3_PLATFORM = "s3.platform"
S3_FINANCING = "s3.financing"
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


# --- money that moves: the run's own operator files and beneficiaries -----------------------------

# Register numbers of this run's beneficiaries, each with a correct check digit (services/eligibility/
# registers/): made up, never a real organisation's on purpose-built ranges.


def kbo(k: int) -> str:
    """A Belgian enterprise number: the last two digits are 97 - (the first eight mod 97)."""
    first = f"07{10_000 + k:06d}"
    return f"{first[:4]}.{first[4:7]}.{first[7]}{97 - int(first) % 97:02d}"


def luhn_digit(digits: str) -> int:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return (10 - total % 10) % 10


def organisationsnummer(k: int) -> str:
    """A Swedish organisationsnummer (10 digits, Luhn check digit), of the 802xxx range (ideella föreningar)."""
    body = f"80240{1000 + k:04d}"
    return f"{body[:6]}-{body[6:]}{luhn_digit(body)}"


def organisasjonsnummer(k: int) -> str:
    """A Norwegian organisasjonsnummer: 9 digits, mod-11 check digit (a remainder of 1 has none: skipped)."""
    n = 923_000_00 + k
    while True:
        digits = f"{n:08d}"
        remainder = sum(int(d) * w for d, w in zip(digits, (3, 2, 7, 6, 5, 4, 3, 2), strict=True)) % 11
        if remainder != 1:
            check = 0 if remainder == 0 else 11 - remainder
            return f"{digits[:3]} {digits[3:6]} {digits[6:]}{check}"
        n += 1_000


#: Beneficiaries per scheme: at least 40, one per eight submissions, so each applies a few times and the
#: ones that apply again meet their ceilings (services/budget/pots.yaml `beneficiary_ceilings`).
BENEFICIARIES = 40


def pool_for(submitted: int) -> int:
    return max(BENEFICIARIES, submitted // 8)


def beneficiary(scheme: str, index: int, pool: int = BENEFICIARIES) -> dict[str, str] | None:
    """The register number of the `index`-th application's applicant, for the schemes that draw money."""
    k = (index // 10) % pool  # one sample in ten turns (bench/workload.py cycles ten samples)
    if scheme.startswith("vlaio."):
        return {"organisation_number": kbo(k + (0 if scheme in CLUSTER_SCHEMES else 500))}
    if scheme.startswith("s3."):
        return {"organisation_number": organisationsnummer(k)}
    if scheme.startswith("nic."):
        return {"organisation_number": organisasjonsnummer(k)}
    if scheme.startswith("ttc."):
        return {"organisation_number": f"Amtsgericht Aachen HRB {20_000 + k}"} if "voucher" in scheme else {}
    return None


#: VLAIO schemes whose applicant is itself a recognised spearhead cluster (the list is keyed by KBO number).
CLUSTER_SCHEMES = ("vlaio.spearhead-cluster", "vlaio.cluster-pact")


def moneyed(items: list[Submission], pool: int = BENEFICIARIES) -> list[Submission]:
    """The run's submissions with varied beneficiaries (valid register numbers), so grants go to many.
    The n-th S3 step-2 (financing) application is by the beneficiary of the (n // 2)-th step-1
    (platform) application: those decided after the call closed are by beneficiaries it ranked."""
    platform = [beneficiary(S3_PLATFORM, i.index, pool) for i in items if i.scheme == S3_PLATFORM and i.kind == "valid"]
    financing = 0
    out = []
    for item in items:
        if item.kind == "malformed":
            out.append(item)
            continue
        document = json.loads(item.body)
        number = beneficiary(item.scheme, item.index, pool)
        if item.scheme == S3_FINANCING and item.kind == "valid" and platform:
            number = platform[min(financing // 2, len(platform) - 1)]
            financing += 1
        if number and isinstance(document.get("applicant"), dict):
            document["applicant"].update(number)
        if document.get("via_cluster"):
            document["via_cluster"] = kbo((item.index // 10) % pool)
        if item.scheme == S3_PLATFORM:
            document["call_id"] = CALL_ID
        body = json.dumps(document, separators=(",", ":")).encode()
        out.append(Submission(item.index, item.kind, item.application_id, item.scheme, body))
    return out


#: How many of each sample's turns the run keeps (deploy/local/samples/, by file name): all of those that
#: draw money until their pots run dry, half of the TTC vouchers (35 are counted), one in sixteen of the
#: others (ineligible by design, no grant proposed, or a competitive call) and a quarter of the invalid
#: submissions, so the run keeps every scheme and outcome while most of its applications move money.
KEEP = {"nic-arena.json": 1.0, "vlaio-cluster-pact-hermes.json": 1.0, "vlaio-spearhead-2019.json": 1.0, "ttc-voucher.json": 0.5}
KEEP_OTHERS, KEEP_INVALID = 0.0625, 0.25
TEMPLATES = sorted(p.name for p in SAMPLES.glob("*.json") if not p.name.startswith("zz-"))  # bench/workload.py's order


def chaos_submissions(n: int, run: str, pii: str) -> list[Submission]:
    """`n` submissions of bench/workload.py's (deterministic, by index), thinned as KEEP says; indices stay
    unique, so application ids and event ids do too. The malformed ones are all kept."""
    out: list[Submission] = []
    index = 0
    while len(out) < n:
        item = submission(index, run, pii)
        turn = index // len(TEMPLATES)
        if item.kind == "valid":
            share = KEEP.get(TEMPLATES[index % len(TEMPLATES)], KEEP_OTHERS)
        else:
            share = 1.0 if item.kind == "malformed" else KEEP_INVALID
        if (turn * share) % 1 + share >= 1 or share >= 1:  # `share` of the turns, evenly spread
            out.append(item)
        index += 1
    return moneyed(out, pool_for(n))


LABEL = "chaos run operator file (not a document figure)"


def money_files(items: list[Submission], folder: Path) -> tuple[Path, Path, dict[str, Any]]:
    """BUDGET_POTS_FILE and ELIGIBILITY_OPERATOR_PARAMETERS_FILE of this run, sized on its submissions:
    the spearhead pot covers about 85 % of what the spearhead applications may get under their
    beneficiaries' yearly ceiling, the NIC pot about 90 %,
    so both run dry mid-run; Hermes is covered in full; TTC's pots and voucher count are the document's
    (they run dry within the first minutes); the S3 selection count is 25 (the document's 20-25)."""
    demand: Counter[str] = Counter(
        f"{i.scheme}/{json.loads(i.body).get('level')}" if i.scheme == "nic.cluster" else i.scheme
        for i in items
        if i.kind == "valid"
    )
    pool = pool_for(len(items))
    # What the spearhead applications may get under the beneficiary ceiling (EUR 500,000 a year per
    # cluster): a cluster's first grant in full (400,000 + 500,000), what is left of 2020 for the rest.
    per_cluster: Counter[str] = Counter(
        json.loads(i.body)["applicant"]["organisation_number"]
        for i in items
        if i.kind == "valid" and i.scheme == "vlaio.spearhead-cluster"
    )
    spearhead_allowed = sum(min(n * 90_000_000, 100_000_000) for n in per_cluster.values())
    nic_grant = 200_000_000 + 150_000_000
    sizes = {
        "vlaio.clusters/agency": int(spearhead_allowed * 0.85),
        "nic/agency": int(demand["nic.cluster/arena"] * 0.9) * nic_grant + nic_grant // 3,
        "vlaio.hermes/hermes": 10 * (demand["vlaio.cluster-pact"] + 1) * 100_000_000,
        "s3/agency": 10 * (demand["s3.financing"] + 1) * 60_000_000,
    }
    period = {"source": LABEL}
    pots = {
        "programmes": [
            {
                "programme": "vlaio.clusters",
                "currency": "EUR",
                "source": LABEL,
                "period": {"first_year": 2019, "last_year": 2028, **period},
            },
            {
                "programme": "vlaio.hermes",
                "currency": "EUR",
                "source": LABEL,
                "period": {"first_year": 2018, "last_year": 2022, **period},
            },
            {"programme": "ttc", "currency": "EUR", "source": LABEL, "period": {"first_year": 2012, "last_year": 2015, **period}},
            {"programme": "nic", "currency": "NOK", "source": LABEL, "period": {"first_year": 2024, "last_year": 2030, **period}},
        ],
        "pots": [
            {
                "pot_id": pot,
                "programme": pot.split("/")[0],
                "fund": pot.split("/")[1],
                "source": LABEL,
                "total_minor": total,
                "currency": {"nic": "NOK", "s3": "SEK"}.get(pot.split("/")[0], "EUR"),
            }
            for pot, total in sizes.items()
        ],
        "counts": [
            {"pot_id": "s3/selection", "programme": "s3", "instruments": ["s3-pilot-financing"], "max_count": 25, "source": LABEL}
        ],
    }
    clusters = sorted({kbo(k) for k in range(pool)})
    parameters = {
        "vlaio": {
            "recognised_spearhead_clusters": clusters,
            "hermes_yearly_maximum_eur": {y: 1_000_000 for y in range(2018, 2023)},
        },
        "ttc": {"innovation_fund_matching_share_percent": 50},
        "s3": {"platform_selection_cap": 25, "financing_application_deadline": "2018-12-31"},
        "nic": {
            "application_deadline": {y: f"{y}-09-15" for y in range(2024, 2031)},
            "selection_cap": 1000,
            "levels": {level: {"yearly_maximum_nok": 3_000_000, "max_years": 4} for level in ("arena", "arena-pro", "gce")},
        },
    }
    folder.mkdir(parents=True, exist_ok=True)
    pots_file, parameters_file = folder / "chaos-pots.yaml", folder / "chaos-operator-parameters.yaml"
    pots_file.write_text(yaml.safe_dump(pots, sort_keys=False))
    parameters_file.write_text(yaml.safe_dump(parameters, sort_keys=False))
    return pots_file, parameters_file, {"pot_totals_minor": sizes, "recognised_clusters": len(clusters)}


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
    replicas: int = 1  # processes of every service (instances <service>-1, -2: rebalances, relay leadership)
    stalls: int = 0  # SIGSTOPs of a random instance, each `stall_s` long, then SIGCONT
    stall_s: float = 20  # > the consumers' session timeout (aiokafka's default, 10 s): its partitions move
    operator: bool = False  # year openings, releases, a call closed, dead letters redriven, through the CLI
    releases: int = 50


@dataclass
class Report:
    figures: dict[str, Any] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)

    def violate(self, message: str) -> None:
        self.violations.append(message)


class Publisher:
    """A portal's producer while the broker restarts: `acknowledged` publishes one record until the
    broker acknowledges it, over a new producer after each error (a copy with the same event id is
    dropped by its consumer's inbox); `retries` counts the attempts again, at most `limit`."""

    def __init__(self, bootstrap: str, deadline: float, limit: int) -> None:
        self.bootstrap, self.deadline, self.limit = bootstrap, deadline, limit
        self.prod = producer(bootstrap)
        self.started = False
        self.retries = 0

    async def start(self) -> None:
        """Start the producer; while the broker is down, the first `acknowledged` starts a new one."""
        try:
            await self.prod.start()
            self.started = True
        except Exception as error:
            tag(f"producer not started ({type(error).__name__}); the first send tries again")

    async def stop(self) -> None:
        with contextlib.suppress(Exception):
            await self.prod.stop()

    async def _send(self, topic: str, value: bytes, options: dict[str, Any]) -> Any:
        if not self.started:  # a send on a producer whose start failed waits forever: start one first
            await self.prod.start()
            self.started = True
        return await (await self.prod.send(topic, value, **options))

    async def acknowledged(self, topic: str, value: bytes, what: str, **options: Any) -> Any:
        """The record's metadata once acknowledged; raises past the deadline or `limit` retries. Each
        attempt (start, send, acknowledgement) is bounded: none waits on a broker that went away."""
        while True:
            try:
                return await asyncio.wait_for(self._send(topic, value, options), 60)
            except Exception as error:
                self.retries += 1
                if time.monotonic() > self.deadline or self.retries > self.limit:
                    raise
                tag(f"{what} not acknowledged ({type(error).__name__}); publishing again")
                await asyncio.sleep(1)
                await self.stop()
                self.prod, self.started = producer(self.bootstrap), False


async def _submit_resilient(stack: Pipeline, items: list[Submission], rate: float, sent: dict[int, Sent], deadline: float) -> int:
    """Publish each submission once acknowledged (re-publish on a broker error: intake drops the copy)."""
    topic = topic_name(Topic.APPLICATION_SUBMITTED, stack.prefix)
    publisher = Publisher(stack.bootstrap, deadline, 10_000)
    await publisher.start()
    started = time.monotonic()

    def send_args(item: Submission) -> tuple[bytes, dict[str, Any]]:
        key = (item.application_id or f"malformed-{item.index}").encode()
        # One event id per submission: a resend after the broker came back is the same event.
        headers = portal_headers(ApplicationSubmitted, source=BENCH_PORTAL, event_id=f"submission-{item.index}")
        return item.body, {"key": key, "headers": headers}

    window = max(1, int(rate))  # about a second of submissions in flight, then their acknowledgements
    try:
        for first in range(0, len(items), window):
            chunk = items[first : first + window]
            delay = started + first / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            pending: list[Submission] = []
            try:
                futures = []
                for item in chunk:
                    body, options = send_args(item)
                    futures.append((item, await publisher.prod.send(topic, body, **options)))
                for item, future in futures:
                    try:
                        meta = await asyncio.wait_for(future, 60)
                        sent[item.index] = Sent(item, meta.timestamp, f"{meta.topic}:{meta.partition}:{meta.offset}")
                    except Exception:
                        pending.append(item)
            except Exception:
                pending = [item for item in chunk if item.index not in sent]
            for item in pending:  # one by one until acknowledged, a new producer after each failure
                body, options = send_args(item)
                meta = await publisher.acknowledged(topic, body, f"submission {item.index}", **options)
                sent[item.index] = Sent(item, meta.timestamp, f"{meta.topic}:{meta.partition}:{meta.offset}")
    finally:
        await publisher.stop()
    return publisher.retries


async def _chaos(stack: Pipeline, plan: Plan, infra: OwnInfra | None, done: asyncio.Event, figures: dict[str, Any]) -> None:
    """SIGKILL services at random moments (bounded), restart them; restart Kafka and PostgreSQL once."""
    rng = random.Random(plan.seed)
    events: list[Any] = [name for name in SERVICES for _ in range(plan.kills_per_service)]
    events += [f"stall:{SERVICES[i % len(SERVICES)]}" for i in range(plan.stalls)]
    rng.shuffle(events)
    if plan.restart_kafka:
        events.insert(len(events) // 3, "kafka")
    if plan.restart_postgres:
        events.insert(2 * len(events) // 3, "postgres")
    expected_s = plan.applications / plan.rate
    gap = max(1.0, expected_s / (len(events) + 1))
    kills: Counter[str] = Counter()
    stalled: list[str] = []
    for what in events:  # every planned event happens (bounded); once all outcomes are in, without waiting
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), rng.uniform(0.5 * gap, 1.5 * gap))
        if what == "kafka" and infra is not None:
            figures["kafka_restart_s"] = round(await asyncio.to_thread(infra.restart_kafka), 1)
        elif what == "postgres" and infra is not None:
            figures["postgres_restart_s"] = round(await asyncio.to_thread(infra.restart_postgres), 1)
        elif what.startswith("stall:"):
            instance = rng.choice(stack.processes.replicas_of(what.removeprefix("stall:")))
            proc = stack.processes.procs.get(instance)
            if proc is None or proc.poll() is not None:
                continue
            tag(f"SIGSTOP {instance} (pid {proc.pid}) for {plan.stall_s:.0f} s: its group membership expires")
            proc.send_signal(signal.SIGSTOP)
            try:
                await asyncio.sleep(plan.stall_s)
            finally:
                proc.send_signal(signal.SIGCONT)
            tag(f"SIGCONT {instance}: it resumes where it stopped, with partitions it no longer owns")
            stalled.append(instance)
        else:
            instance = rng.choice(stack.processes.replicas_of(what))
            tag(f"SIGKILL {instance} (pid {stack.processes.procs[instance].pid})")
            await asyncio.to_thread(stack.processes.kill, instance)
            kills[what] += 1
            await asyncio.sleep(rng.uniform(0.2, 2.0))
            stack.processes.start(instance)
    figures["sigkills"] = dict(kills)
    figures["stalled"] = stalled


# --- operator commands during the faults, through the real CLI ---------------------------------------

OPERATOR_ID = "chaos-operator"
JUNK = b"chaos-junk-decision"  # a decision no contract accepts: parked by every consumer of decisions, then redriven
#: Services that consume decisions (intake's status projection, budget, notify): each parks the junk once.
JUNK_PARKERS = sum(Topic.ELIGIBILITY_DECIDED in topics for topics in CONSUMES.values())


def cli_env(stack: Pipeline, log_dir: Path) -> dict[str, str]:
    from deploy.local.kafka_users import principal_env
    from shared.acl import OPERATOR

    keep = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_SASL_", "KAFKA_SECURITY_"))}
    return {
        **keep,
        **{k: stack.env[k] for k in ("DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS", "TOPIC_PREFIX", "BUDGET_POTS_FILE")},
        "ELIGIBILITY_OPERATOR_PARAMETERS_FILE": stack.env["ELIGIBILITY_OPERATOR_PARAMETERS_FILE"],
        **principal_env(OPERATOR),
        "CLUSTERGRANTS_OPERATOR": OPERATOR_ID,
        "CLUSTERGRANTS_STATE_DIR": str(log_dir / "cli-state"),  # no stack.env there: every setting is given
        "LOG_FORMAT": "json",
    }


def _cli(env: dict[str, str], args: tuple[str, ...]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *args],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


async def clustergrants(env: dict[str, str], *args: str, deadline: float) -> subprocess.CompletedProcess[str]:
    """One CLI command; again after a failure while Kafka or PostgreSQL restarts (each one transaction)."""
    attempt = 0
    while True:
        attempt += 1
        done = await asyncio.to_thread(_cli, env, args)
        if done.returncode == 0 or attempt >= 8 or time.monotonic() > deadline:
            return done
        tag(f"clustergrants {' '.join(args[:3])} exited {done.returncode} ({done.stderr.strip()[-160:]}); again in 5 s")
        await asyncio.sleep(5)


async def _inject_junk(stack: Pipeline) -> None:
    """One decision record that no contract accepts (as the tests' dead-letter case): parked once by each consumer."""
    from tests.kafka_tools import publish_raw

    headers = [
        ("ce_id", b"chaos-junk-1"),
        ("ce_source", b"/clustergrants/eligibility"),
        ("ce_specversion", b"1.0"),
        ("ce_type", DECIDED_TYPE.encode()),
    ]
    await publish_raw(stack.bootstrap, topic_name(Topic.ELIGIBILITY_DECIDED, stack.prefix), JUNK, b"chaos-junk", headers)


@dataclass
class Scoring:
    """The assessors' scores the run sent for the call: application -> assessor -> criterion -> score,
    the latest of each assessor (a stale copy sent after it must change nothing), and what was sent."""

    criteria: tuple[str, ...]
    latest: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)
    published: int = 0


def scores_for(application_id: str, criteria: tuple[str, ...]) -> dict[str, dict[str, int]] | None:
    """Deterministic scores from the id: none for one application in five (it stays unscored), one or
    two assessors, 0-10 per criterion; the totals then tie now and then (the tie rule decides)."""
    h = int.from_bytes(application_id.encode()[-6:], "big") * 2_654_435_761
    if h % 5 == 0:
        return None
    assessors = ("assessor-a", "assessor-b")[: 1 + (h >> 3) % 2]
    return {a: {c: (h >> (4 * k + 7 * n)) % 11 for k, c in enumerate(criteria)} for n, a in enumerate(assessors)}


async def _publish_acknowledged(
    stack: Pipeline, topic: Topic, records: list[tuple[bytes, bytes, list[tuple[str, bytes]]]], deadline: float
) -> int:
    """Publish (key, value, headers) records in order, each once acknowledged (Publisher); returns the retries."""
    name = topic_name(topic, stack.prefix)
    publisher = Publisher(stack.bootstrap, deadline, 1_000)
    try:
        await publisher.start()
        for key, value, headers in records:
            await publisher.acknowledged(name, value, f"{topic.value} record", key=key, headers=headers)
    finally:
        await publisher.stop()
    return publisher.retries


async def _assess(stack: Pipeline, tracker: Tracker, scoring: Scoring, deadline: float) -> dict[str, int]:
    """Score the call's applications decided eligible so far, as a portal does, while things break: each
    assessment published twice (a duplicate), and for one in four an older version of it after it."""
    eligible = sorted(
        {
            body["application_id"]
            for _ts, body, _h in tracker.records[Topic.ELIGIBILITY_DECIDED]
            if body.get("scheme") == S3_PLATFORM and body.get("outcome") == "eligible"
        }
    )
    records: list[tuple[bytes, bytes, list[tuple[str, bytes]]]] = []
    now = datetime.now(UTC)

    def record(app: str, assessor: str, scores: dict[str, int], at: datetime, event_id: str) -> None:
        body = AssessmentSubmitted(
            application_id=app,
            assessment_id=f"{app}-{assessor}",
            call_id=CALL_ID,
            assessor_id=assessor,
            scores=scores,
            submitted_at=at,
        )
        headers = portal_headers(AssessmentSubmitted, source=BENCH_PORTAL, event_id=event_id, subject=app)
        records.append((app.encode(), body.model_dump_json().encode(), headers))

    for app in eligible:
        by_assessor = scores_for(app, scoring.criteria)
        if by_assessor is None:
            continue
        scoring.latest[app] = by_assessor
        for assessor, scores in by_assessor.items():
            for _copy in range(2):
                record(app, assessor, scores, now, f"assessment-{app}-{assessor}")
            if len(scoring.latest) % 4 == 0:  # an older version arriving late: it must not win
                stale = {c: (v + 5) % 11 for c, v in scores.items()}
                record(app, assessor, stale, now - timedelta(hours=1), f"assessment-{app}-{assessor}-stale")
    scoring.published = len(records)
    retries = await _publish_acknowledged(stack, Topic.ASSESSMENT_SUBMITTED, records, deadline)
    return {"eligible_then": len(eligible), "scored": len(scoring.latest), "records": len(records), "retries": retries}


async def _assessments_recorded(database_url: str, scoring: Scoring, deadline: float, within_s: float = 180) -> bool:
    """Until eligibility has recorded every assessment sent, as sent (the operator closes after that),
    for `within_s` at most: then the call is closed as it stands and the check reports the difference."""
    want = {(app, assessor): scores for app, by in scoring.latest.items() for assessor, scores in by.items()}
    until = min(deadline, time.monotonic() + within_s)
    while time.monotonic() < until:
        with contextlib.suppress(OSError, asyncpg.PostgresError):
            conn = await asyncpg.connect(database_url)
            try:
                rows = await conn.fetch(
                    "SELECT application_id, assessor_id, scores::text FROM eligibility.assessments WHERE call_id = $1", CALL_ID
                )
            finally:
                await conn.close()
            if {(r["application_id"], r["assessor_id"]): json.loads(r["scores"]) for r in rows} == want:
                return True
        await asyncio.sleep(2)
    return False


async def _operate(
    stack: Pipeline,
    plan: Plan,
    tracker: Tracker,
    log_dir: Path,
    figures: dict[str, Any],
    deadline: float,
    outcomes_in: asyncio.Event,
    scoring: Scoring,
) -> None:
    """The operator at work while things break: two year openings, `plan.releases` releases, a competitive
    call scored by assessors and closed, the parked records redriven; each command given twice where a
    second run must change nothing."""
    env = cli_env(stack, log_dir)
    expected_s = plan.applications / plan.rate
    started = time.monotonic()
    ran: list[dict[str, Any]] = []

    async def at(fraction: float) -> None:
        delay = started + fraction * expected_s - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)

    async def command(*args: str) -> subprocess.CompletedProcess[str]:
        done = await clustergrants(env, *args, "--yes", deadline=deadline)
        ran.append({"command": " ".join(args), "rc": done.returncode})
        if done.returncode != 0:
            tag(f"clustergrants {' '.join(args)} failed: {done.stderr.strip()[-300:]}")
        return done

    async def competitive_call() -> None:
        # Beside the releases (55 or so CLI runs take minutes): scored at 0.4, closed at 0.55, so that
        # about half of the S3 step-2 applications are decided after the close.
        await at(0.4)
        figures["assessments"] = await _assess(stack, tracker, scoring, deadline)
        await at(0.55)
        figures["assessments"]["recorded_before_close"] = await _assessments_recorded(stack.database_url, scoring, deadline)
        await command("calls", "close-call", S3_PLATFORM, CALL_ID)
        await command("calls", "close-call", S3_PLATFORM, CALL_ID)  # again: the first result, unchanged

    call = asyncio.create_task(competitive_call())
    await _inject_junk(stack)
    await at(0.2)
    hermes = ("--yearly-maximum-minor", str(HERMES_2018_MAXIMUM_MINOR))
    for programme, year, *maximum in (("vlaio.clusters", "2019"), ("s3", "2018"), ("vlaio.hermes", "2018", *hermes)):
        await command("budget", "open-year", programme, year, *maximum)
        await command("budget", "open-year", programme, year, *maximum)  # asked again: the year is opened once
    await at(0.4)
    chosen: list[str] = []
    while len(chosen) < plan.releases and time.monotonic() < deadline and not outcomes_in.is_set():
        chosen = sorted(
            {
                body["application_id"]
                for _ts, body, _h in tracker.records[Topic.GRANT_COMMITTED]
                if body.get("grant", {}).get("programme") in ("vlaio.clusters", "nic")
            }
        )[: plan.releases]
        if len(chosen) < plan.releases:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(outcomes_in.wait(), 2)
    for i, application in enumerate(chosen):
        await command("budget", "release", application, "--withdraw")
        if i % 10 == 0:
            await command("budget", "release", application, "--withdraw")  # again: nothing left to return
    figures["released_applications"] = chosen
    await at(0.55)
    parked = [f"{p}:{o}" for p, o, value in tracker.dead_letters if value == JUNK]
    while len(parked) < 2 and time.monotonic() < deadline:
        await asyncio.sleep(2)
        parked = [f"{p}:{o}" for p, o, value in tracker.dead_letters if value == JUNK]
    for dead in parked[:2]:
        await command("dead-letters", "redrive", dead)
    figures["redriven"] = parked[:2]
    await call
    figures["operator_commands"] = ran


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
                outboxes = " + ".join(f"(SELECT count(*) FROM {service}.outbox)" for service in SERVICES)
                busy = await conn.fetchval(
                    f"SELECT {outboxes} + (SELECT count(*) FROM notify.notifications WHERE status = 'scheduled')"
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
    items = chaos_submissions(plan.applications, run_id, pii)
    receiver = Receiver()
    await receiver.start()
    webhooks = _write_subscriptions(log_dir, receiver.port)
    pots_file, parameters_file, figures["money"] = money_files(items, log_dir)
    env = {
        "BUDGET_POTS_FILE": str(pots_file),
        "ELIGIBILITY_OPERATOR_PARAMETERS_FILE": str(parameters_file),
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
            pipeline(bootstrap, server_url, log_dir, name=f"cg_chaos_{run_id.lower()}", replicas=plan.replicas, **env) as stack,  # type: ignore[arg-type]  # env holds service variables only (str)
            Tracker(bootstrap, stack.prefix, TRACKED, keep=True) as tracker,
        ):
            sent: dict[int, Sent] = {}
            done = asyncio.Event()
            stop_watch = asyncio.Event()
            watcher = asyncio.create_task(_watch_crashes(stack, figures, stop_watch))
            chaos = asyncio.create_task(_chaos(stack, plan, infra, done, figures))
            scoring = Scoring(S3_CRITERIA)
            operate = (
                asyncio.create_task(_operate(stack, plan, tracker, log_dir, figures, deadline, done, scoring))
                if plan.operator
                else None
            )
            figures["resubmissions"] = await _submit_resilient(stack, items, plan.rate, sent, deadline)
            figures["submitted_s"] = round(time.monotonic() - started, 1)
            tag(f"{len(sent):,} submitted in {figures['submitted_s']} s; waiting for every outcome")
            finished = await tracker.wait_all(sent.values(), max(30.0, deadline - time.monotonic()), "chaos")
            done.set()
            await chaos
            if operate is not None:
                await operate
            quiet = await _quiet(stack.database_url, max(30.0, deadline - time.monotonic()))
            await asyncio.sleep(3)  # the tracker reads what the last relays published
            stop_watch.set()
            await watcher
            figures["all_outcomes_seen"] = finished
            figures["quiet_at_end"] = quiet
            figures["elapsed_s"] = round(time.monotonic() - started, 1)
            await _check(stack, tracker, items, receiver, pii, report)
            applicants = {
                i.application_id: json.loads(i.body)["applicant"]["organisation_number"]
                for i in items
                if i.application_id and i.kind == "valid"
            }
            await _check_money(stack, tracker, plan, log_dir, report, applicants)
            if plan.operator:
                await _check_call(stack, tracker, items, scoring, report)
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
    # Per application, channel and kind: its outcome's messages, and (the operator's withdrawals) releases'.
    sent: dict[tuple[str, str], set[str]] = defaultdict(set)
    for _ts, body, _h in tracker.records[Topic.NOTIFICATION_SENT]:
        if body.get("application_id"):
            channel = "release" if str(body.get("template", "")).startswith("release.") else body["channel"]
            sent[(body["application_id"], channel)].add(body["notification_id"])
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
                "SELECT application_id, CASE WHEN template LIKE 'release.%' THEN 'release' ELSE channel END"
                " FROM notify.notifications WHERE status = 'sent' AND application_id IS NOT NULL"
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
    # A release e-mail for each grant the operator withdrew and each the Hermes opening capped.
    released_told = set(f.get("released_applications", ())) | capped_applications(tracker)
    bad(
        "withdrawn or capped grants without exactly one release e-mail, or others with one (database)",
        [a for a in valid if db_notes[(a, "release")] != (a in released_told)],
    )
    bad(
        "withdrawn or capped grants without exactly one release e-mail, or others with one (topic)",
        [a for a in valid if len(sent.get((a, "release"), ())) != (a in released_told)],
    )
    bad("invalid submissions without exactly one rejection", [a for a in invalid if len(rejected.get(a, ())) != 1])
    bad("invalid submissions without exactly one e-mail", [a for a in invalid if len(sent.get((a, "email"), ())) != 1])
    bad("invalid submissions that were decided", [a for a in invalid if db_decisions[a]])
    if problems:
        report.violate(f"ledger does not reconcile: {problems[:5]}")
    if negative:
        report.violate(f"negative pots: {[dict(r) for r in negative]}")
    bad("pots whose balance differs from their entries", [r["pot_id"] for r in pots if r["balance"] != r["entries"]])
    dead = [h for _, body, h in tracker.records[Topic.DEAD_LETTER] if body != {} or h.get("ce_id") != "chaos-junk-1"]
    f["dead_letters"] = len(dead)
    if dead:
        report.violate(f"{len(dead)} records dead-lettered: {Counter(h.get('cg_dlt_error_type') for h in dead)}")
    # No personal data in any log line: every contact of this run carries `pii` in its name and address.
    lines = hits = 0
    for name in stack.processes.instances:
        path = stack.processes.log(name)
        if path.exists():
            for line in path.read_text(errors="replace").splitlines():
                lines += 1
                if pii in line or re.search(r"[\w.+-]+@example\.org", line):
                    hits += 1
    f["log_lines"] = lines
    if hits:
        report.violate(f"{hits} log lines carry personal data")


async def group_positions(bootstrap: str, prefix: str, groups: list[str]) -> dict[str, dict[Any, tuple[int, int]]]:
    """Per group: (committed offset, end offset) of every partition of this run's topics it committed on."""
    from aiokafka import AIOKafkaConsumer
    from aiokafka.admin import AIOKafkaAdminClient

    from deploy.local.kafka_users import client_options
    from shared.acl import ADMIN

    admin = AIOKafkaAdminClient(**client_options(ADMIN, bootstrap))
    reader = AIOKafkaConsumer(**client_options(ADMIN, bootstrap), enable_auto_commit=False)
    await admin.start()
    await reader.start()
    try:
        out: dict[str, dict[Any, tuple[int, int]]] = {}
        for group in groups:
            committed = await admin.list_consumer_group_offsets(group)
            mine = {tp: meta.offset for tp, meta in committed.items() if tp.topic.startswith(prefix) and meta.offset >= 0}
            ends = await reader.end_offsets(list(mine)) if mine else {}
            out[group] = {tp: (offset, ends[tp]) for tp, offset in mine.items()}
        return out
    finally:
        await reader.stop()
        await admin.close()


def expected_ranking(scoring: Scoring, submitted_at: dict[str, datetime], cap: int) -> list[tuple[str, int, Fraction, bool]]:
    """The call's ranking as the seed's rules give it, worked out here from the scores the run sent:
    (application, rank, total, selected); the total is the sum over the criteria of the assessors'
    mean, ties go to the earlier submission, then to the lower application id."""
    totals = {
        app: sum((Fraction(sum(s[c] for s in by.values()), len(by)) for c in scoring.criteria), Fraction(0))
        for app, by in scoring.latest.items()
    }
    order = sorted(totals, key=lambda app: (-totals[app], submitted_at[app], app))
    return [(app, i + 1, totals[app], i < cap) for i, app in enumerate(order)]


async def _check_call(stack: Pipeline, tracker: Tracker, items: list[Submission], scoring: Scoring, report: Report) -> None:
    """The competitive call closed under faults ranks exactly what the assessors sent: every application
    scored before the close, with the latest scores of each assessor (duplicates and stale copies changed
    nothing), in the tie rule's order, the first `cap` selected; the eligible ones left unscored listed."""
    f = report.figures
    closed = once(tracker.records[Topic.CALL_CLOSED])
    if len(closed) != 1:
        return  # _check_money has reported it
    call = closed[0]
    submitted_at = {
        i.application_id: datetime.fromisoformat(json.loads(i.body)["submitted_at"])
        for i in items
        if i.scheme == S3_PLATFORM and i.application_id
    }
    eligible = {
        body["application_id"]
        for _ts, body, _h in tracker.records[Topic.ELIGIBILITY_DECIDED]
        if body.get("scheme") == S3_PLATFORM and body.get("outcome") == "eligible"
    }
    want = expected_ranking(scoring, submitted_at, call["cap"])
    got = [(r["application_id"], r["rank"], Fraction(r["total_score"]), r["selected"]) for r in call["ranking"]]
    f["call"] = {
        "ranked": len(got),
        "selected": sum(1 for *_, selected in got if selected),
        "unscored": len(call["unscored"]),
        "cap": call["cap"],
        "ties": len(want) - len({total for _, _, total, _ in want}),
    }
    if not want:
        report.violate(f"the call had nothing to rank: {f.get('assessments')}")
    if got != want:
        diff = [(g, w) for g, w in zip(got, want, strict=False) if g != w][:3]
        report.violate(f"call {CALL_ID}: ranking {len(got)} entries, expected {len(want)}; first differences {diff}")
    stray = set(call["unscored"]) - (eligible - set(scoring.latest))
    if stray:
        report.violate(f"call {CALL_ID}: unscored lists applications that are scored or not eligible: {sorted(stray)[:5]}")
    if call["cap"] != 25:
        report.violate(f"call {CALL_ID}: cap {call['cap']}, the run's operator file sets 25")
    conn = await asyncpg.connect(stack.database_url)
    try:
        rows = await conn.fetch(
            "SELECT application_id, assessor_id, scores::text FROM eligibility.assessments WHERE call_id = $1", CALL_ID
        )
    finally:
        await conn.close()
    kept = {(r["application_id"], r["assessor_id"]): json.loads(r["scores"]) for r in rows}
    if kept != {(app, a): scores for app, by in scoring.latest.items() for a, scores in by.items()}:
        report.violate(f"call {CALL_ID}: {len(kept)} assessments recorded differ from the latest sent (a stale copy won?)")
    check_step_2([body for _ts, body, _h in tracker.records[Topic.ELIGIBILITY_DECIDED]], call, report)


def check_capped(
    capped: list[dict[str, Any]],
    in_ledger: dict[str, int],
    report: Report,
    programme: str = "vlaio.hermes",
    year: int = 2018,
    maximum: int = HERMES_2018_MAXIMUM_MINOR,
) -> None:
    """The opening's capped releases (GrantReleased data, reason capped, each once by identity) against
    the ledger (`in_ledger`: application -> what its yearly-maximum release entries returned): at least
    one; one per application; each of `programme`, returning money of `year` only and leaving exactly
    `maximum` of it; together returning, application by application, what the ledger returned."""
    by_application = Counter(e["application_id"] for e in capped)
    returned = {e["application_id"]: sum(int(line["amount"]["amount_minor"]) for line in e["released"]) for e in capped}
    wrong = [
        e["application_id"]
        for e in capped
        if e["programme"] != programme
        or any(int(line["budget_year"]) != year for line in e["released"])
        or [int(y["amount"]["amount_minor"]) for y in e["remaining"] if int(y["budget_year"]) == year] != [maximum]
    ]
    twice = sorted(a for a, n in by_application.items() if n != 1)
    if not capped or wrong or twice or returned != in_ledger:
        differ = sorted(a for a in set(returned) | set(in_ledger) if returned.get(a) != in_ledger.get(a))
        report.violate(
            f"capped releases: {len(capped)} events for {len(by_application)} applications, {len(in_ledger)} grants"
            f" capped in the ledger; not {programme} {year} down to the maximum: {wrong[:5]}; more than once:"
            f" {twice[:5]}; events and ledger differ: {differ[:5]}"
        )


def check_step_2(
    decided: list[dict[str, Any]], call: dict[str, Any], report: Report, margin: timedelta = timedelta(seconds=5)
) -> None:
    """S3 step 2 follows the project's own step-1 result: a financing application decided before the
    call closed cannot be decided on its selection (not_decidable, a case handler's); one decided after
    passes if and only if its beneficiary is one the call selected. Decisions within `margin` of the
    close may have read either side of it and are not counted. `decided`: EligibilityDecided data."""
    first = [body for body in decided if body.get("revision", 1) == 1 and body.get("scheme")]
    beneficiary = {b["application_id"]: b.get("beneficiary_id") for b in first if b["scheme"] == S3_PLATFORM}
    selected = {beneficiary.get(r["application_id"]) for r in call["ranking"] if r["selected"]} - {None}
    closed_at = datetime.fromisoformat(call["closed_at"])
    seen: Counter[str] = Counter()
    wrong: list[tuple[str, str, str]] = []
    for body in (b for b in first if b["scheme"] == S3_FINANCING):
        decided_at = datetime.fromisoformat(body["decided_at"])
        if abs(decided_at - closed_at) < margin:
            continue
        verdict = next((c["outcome"] for c in body["criteria"] if c["criterion"] == "selected_for_platform"), "missing")
        after = decided_at > closed_at
        if not after or not body.get("beneficiary_id"):
            want = "not_decidable"
        else:
            want = "passed" if body["beneficiary_id"] in selected else "failed"
        seen[f"{'after' if after else 'before'}:{verdict}"] += 1
        if verdict != want:
            wrong.append((body["application_id"], verdict, want))
    report.figures["step_2"] = dict(sorted(seen.items()))
    if wrong:
        report.violate(f"S3 step 2 against the call's selection: {len(wrong)} decided otherwise, e.g. {wrong[:3]} (got, wanted)")
    if not seen["after:passed"] or not seen["after:failed"]:
        report.violate(f"S3 step 2 after the close: no application of each kind, selected and not ({dict(seen)})")


def split(amount: int, shares: list[dict[str, Any]]) -> dict[str, int]:
    """A yearly amount over the fund shares as the ledger splits it: each share rounded down, the
    remainder (a few minor units) to the first fund (services/budget/README.md)."""
    parts = {sh["fund"]: amount * sh["numerator"] // sh["denominator"] for sh in shares}
    first = shares[0]["fund"]
    parts[first] += amount - sum(parts.values())
    return parts


def ledger_from_topics(committed: list[dict[str, Any]], released: list[dict[str, Any]]) -> dict[tuple[str, str, int], int]:
    """What an agency system reading the topics knows: per programme, fund and budget year, in minor units,
    the sum of GrantCommitted minus the sum of GrantReleased (each event once, by its id)."""
    out: Counter[tuple[str, str, int]] = Counter()
    for event in committed:
        grant = event["grant"]
        for line in grant["schedule"]:
            for fund, part in split(int(line["amount"]["amount_minor"]), grant["fund_shares"]).items():
                out[(grant["programme"], fund, int(line["budget_year"]))] += part
    for event in released:
        for line in event["released"]:
            out[(event["programme"], line["fund"], int(line["budget_year"]))] -= int(line["amount"]["amount_minor"])
    return {k: v for k, v in out.items() if v}


def capped_applications(tracker: Tracker) -> set[str]:
    """The applications whose grant a year's opening capped (GrantReleased, reason capped)."""
    return {e["application_id"] for e in once(tracker.records[Topic.GRANT_RELEASED]) if e.get("reason") == "capped"}


def once(records: list[tuple[int, dict[str, Any], dict[str, str]]]) -> list[dict[str, Any]]:
    """The events of a topic, each identity once (a copy re-sent after a crash has the same id)."""
    seen: dict[tuple[str, str], dict[str, Any]] = {}
    for _ts, body, headers in records:
        seen.setdefault((headers.get("ce_source", ""), headers.get("ce_id", "")), body)
    return list(seen.values())


async def _check_money(
    stack: Pipeline, tracker: Tracker, plan: Plan, log_dir: Path, report: Report, applicants: dict[str, str]
) -> None:
    f = report.figures
    committed, released = once(tracker.records[Topic.GRANT_COMMITTED]), once(tracker.records[Topic.GRANT_RELEASED])
    from_topics = ledger_from_topics(committed, released)
    conn = await asyncpg.connect(stack.database_url)
    try:
        rows = await conn.fetch(
            "SELECT p.programme, p.fund, e.budget_year,"
            " sum(e.amount_minor) FILTER (WHERE e.kind = 'commit') AS c,"
            " sum(e.amount_minor) FILTER (WHERE e.kind = 'release') AS r"
            " FROM budget.entries e JOIN budget.pots p USING (pot_id) WHERE p.unit <> 'count'"
            " GROUP BY p.programme, p.fund, e.budget_year"
        )
        refusals = Counter(r[0] for r in await conn.fetch("SELECT limit_id FROM budget.refusals"))
        pots = await conn.fetch(
            "SELECT pot_id, unit, total_minor, committed_minor - released_minor AS used FROM budget.pots ORDER BY pot_id"
        )
        withdrawn = {r[0] for r in await conn.fetch("SELECT application_id FROM budget.grants WHERE status = 'withdrawn'")}
    finally:
        await conn.close()
    in_db = {(r["programme"], r["fund"], r["budget_year"]): (r["c"] or 0) - (r["r"] or 0) for r in rows}
    in_db = {k: v for k, v in in_db.items() if v}
    f["ledger_keys"] = len(in_db)
    f["refusals_by_limit"] = dict(refusals.most_common())
    f["pots_at_end"] = {r["pot_id"]: {"unit": r["unit"], "total": r["total_minor"], "used": r["used"]} for r in pots}
    f["pots_dry"] = sorted(
        r["pot_id"] for r in pots if refusals.get(f"pot:{r['pot_id']}") or refusals.get(f"count:{r['pot_id']}")
    )
    if from_topics != in_db:
        diff = {
            str(k): (from_topics.get(k, 0), in_db.get(k, 0))
            for k in set(from_topics) | set(in_db)
            if from_topics.get(k, 0) != in_db.get(k, 0)
        }
        report.violate(f"ledger != sum(GrantCommitted) - sum(GrantReleased) on the topics, (topics, ledger): {diff}")
    # The consumer groups after the stalls and kills: every committed offset of this run's partitions at the
    # partition's end (all read, none skipped past), and what the stalled instances logged when the broker
    # refused their commits for partitions that had moved to the other replica.
    try:
        positions = await group_positions(stack.bootstrap, stack.prefix, [f"clustergrants.{n}" for n in SERVICES])
    except Exception as error:  # a check that cannot run is a failed check, with what stopped it
        positions = {}
        report.violate(f"consumer group offsets could not be read: {type(error).__name__}: {error}")
    f["group_lag_at_end"] = {g: sum(end - c for c, end in parts.values()) for g, parts in positions.items()}
    beyond = {g: [str(tp) for tp, (c, end) in parts.items() if c > end] for g, parts in positions.items()}
    if any(beyond.values()):
        report.violate(f"committed offsets beyond the end of their partitions: {beyond}")
    if any(f["group_lag_at_end"].values()):
        report.violate(f"records left unread at the end: {f['group_lag_at_end']}")
    # The open-data read model (a projection of the topics) holds what the ledger holds, grant by grant.
    conn = await asyncpg.connect(stack.database_url)
    try:
        ledger = await conn.fetch(
            "SELECT g.grant_id::text AS grant_id, s.budget_year, sum(s.amount_minor)::bigint AS amount"
            " FROM budget.grants g JOIN budget.slices s ON s.grant_id = g.grant_id AND s.unit = g.currency"
            " GROUP BY 1, 2 HAVING sum(s.amount_minor) > 0"
        )
        projected = await conn.fetch(
            "SELECT grant_id::text AS grant_id, budget_year, committed_minor - released_minor AS amount"
            " FROM opendata.grant_years WHERE committed_minor > released_minor"
        )
    finally:
        await conn.close()
    in_ledger = {(r["grant_id"], r["budget_year"]): r["amount"] for r in ledger}
    in_open_data = {(r["grant_id"], r["budget_year"]): r["amount"] for r in projected}
    f["open_data_grant_years"] = len(in_open_data)
    if in_open_data != in_ledger:
        differ = sorted(k for k in set(in_ledger) | set(in_open_data) if in_ledger.get(k) != in_open_data.get(k))
        report.violate(
            f"open data != ledger in {len(differ)} grant-years, e.g. "
            f"{[(k, in_open_data.get(k), in_ledger.get(k)) for k in differ[:5]]}"
        )
    refused: Counter[str] = Counter()
    for instance in f.get("stalled", ()):
        path = stack.processes.log(instance)
        if path.exists():
            refused[instance] = path.read_text(errors="replace").count("offset commit refused")
    f["stalled_commits_refused"] = dict(refused)
    # No beneficiary ceiling exceeded: the ledger's own rows, and (independently, from the topics and this
    # run's own applicants) the spearhead clusters' EUR 500,000 a year (services/budget/pots.yaml).
    conn = await asyncpg.connect(stack.database_url)
    try:
        over = await conn.fetch(
            "SELECT limit_id, beneficiary_id, budget_year, used, maximum FROM budget.beneficiary_limits"
            " WHERE maximum IS NOT NULL AND used > maximum"
        )
        reached = await conn.fetchval(
            "SELECT count(*) FROM budget.beneficiary_limits WHERE maximum IS NOT NULL AND used = maximum AND maximum > 0"
        )
    finally:
        await conn.close()
    f["beneficiary_limits_reached"] = reached
    if over:
        report.violate(f"beneficiary ceilings exceeded in the ledger: {[dict(r) for r in over[:5]]}")
    yearly: Counter[tuple[str, int]] = Counter()
    for event in committed:
        if event.get("scheme") == "vlaio.spearhead-cluster":
            for line in event["grant"]["schedule"]:
                yearly[(applicants.get(event["application_id"], "?"), int(line["budget_year"]))] += int(
                    line["amount"]["amount_minor"]
                )
    for event in released:
        if event.get("scheme") == "vlaio.spearhead-cluster":
            for line in event["released"]:
                yearly[(applicants.get(event["application_id"], "?"), int(line["budget_year"]))] -= int(
                    line["amount"]["amount_minor"]
                )
    f["spearhead_cluster_years_at_ceiling"] = sum(1 for v in yearly.values() if v == 50_000_000)
    above = {f"{k[0]}/{k[1]}": v for k, v in yearly.items() if v > 50_000_000}
    if above:
        report.violate(f"spearhead clusters above EUR 500,000 in a year (from the topics): {dict(list(above.items())[:5])}")
    # Every effect has its audit record, every audit record its effect.
    audits = once(tracker.records[Topic.AUDIT_RECORDED])
    f["audit_records"] = dict(Counter(f"{a['command']}:{a['outcome']}" for a in audits))
    if not plan.operator:
        if audits or released:
            report.violate(f"audit records or releases without an operator: {len(audits)}, {len(released)}")
        return
    cli_trail = json.loads(
        (
            await clustergrants(cli_env(stack, log_dir), "audit", "--json", "--limit", "100000", deadline=time.monotonic() + 120)
        ).stdout
        or "[]"
    )
    f["audit_rows_in_database"] = len(cli_trail)
    if len(cli_trail) != len(audits):
        report.violate(f"{len(cli_trail)} audit rows in the databases, {len(audits)} AuditRecorded on the topic")
    mine = [a for a in audits if a["operator"] == OPERATOR_ID]
    if len(mine) != len(audits):
        report.violate(f"audit records by someone else: {[a for a in audits if a['operator'] != OPERATOR_ID][:3]}")

    def audited(command: str) -> list[dict[str, Any]]:
        return [a for a in mine if a["command"] == command]

    # Year openings: one CeilingReset per programme and year, one audit record that requested it.
    resets = Counter(r["reset_id"] for r in once(tracker.records[Topic.CEILING_RESET]))
    opened = Counter(
        f"{a['arguments'].get('programme')}/{a['arguments'].get('budget_year')}"
        for a in audited("budget open-year")
        if a["outcome"] == "requested"
    )
    f["ceiling_resets"] = dict(resets)
    if resets != Counter({"vlaio.clusters/2019": 1, "s3/2018": 1, "vlaio.hermes/2018": 1}) or opened != resets:
        report.violate(f"year openings: CeilingReset {dict(resets)}, audited {dict(opened)}")
    # The Hermes opening: one GrantReleased (reason capped) per grant it capped, each taking 2018 down to
    # the maximum, as many as the ledger's grants with a yearly-maximum release; at least one, or the
    # run proves nothing of it.
    capped = [e for e in released if e.get("reason") == "capped"]
    conn = await asyncpg.connect(stack.database_url)
    try:
        capped_in_ledger = {
            r[0]: r[1]
            for r in await conn.fetch(
                "SELECT g.application_id, sum(e.amount_minor)::bigint FROM budget.entries e"
                " JOIN budget.grants g USING (grant_id) WHERE e.kind = 'release' AND e.reason = 'yearly_maximum'"
                " GROUP BY g.application_id"
            )
        }
    finally:
        await conn.close()
    f["capped_by_opening"] = {"events": len(capped), "grants_in_ledger": len(capped_in_ledger)}
    check_capped(capped, capped_in_ledger, report)
    # Releases: each chosen grant withdrawn once; one GrantReleased and one audit record that released it.
    chosen = set(f.get("released_applications", ()))
    by_event = Counter(e["application_id"] for e in released if e.get("reason") != "capped")
    by_audit = Counter(a["arguments"].get("application_id") for a in audited("budget release") if a["outcome"] == "released")
    f["releases"] = {"chosen": len(chosen), "events": len(by_event), "audited": len(by_audit), "withdrawn_in_db": len(withdrawn)}
    if len(chosen) != plan.releases or set(by_event) != chosen or set(by_audit) != chosen or withdrawn != chosen:
        report.violate(
            f"releases: chosen {len(chosen)}, GrantReleased {len(by_event)}, audited {len(by_audit)}, withdrawn {len(withdrawn)}"
        )
    if any(n != 1 for n in (*by_event.values(), *by_audit.values())):
        report.violate(
            "a release in effect twice (events or audit records): "
            f"{[a for a, n in (*by_event.items(), *by_audit.items()) if n > 1]}"
        )
    # The call: closed once, one CallClosed, one audit record that closed it (its ranking: _check_call).
    closed = once(tracker.records[Topic.CALL_CLOSED])
    closings = [a for a in audited("calls close-call") if a["outcome"] == "closed"]
    f["calls_closed"] = [(c["call_id"], len(c["ranking"]), len(c["unscored"])) for c in closed]
    if len(closed) != 1 or len(closings) != 1:
        report.violate(f"close-call: {len(closed)} CallClosed, {len(closings)} audit records that closed it")
    # Redrives: one audit record each; each redriven record parked again exactly once (junk stays junk).
    junk = [h for _ts, body, h in tracker.records[Topic.DEAD_LETTER] if body == {} and h.get("ce_id") == "chaos-junk-1"]
    redrives = audited("dead-letters redrive")
    f["dead_letter_junk"] = {"copies": len(junk), "redrives_audited": len(redrives)}
    if len(redrives) != len(f.get("redriven", ())) or len(junk) != JUNK_PARKERS + len(redrives) or len(redrives) != 2:
        report.violate(
            f"redrive: {len(redrives)} audited of {f.get('redriven')}, {len(junk)} parked copies"
            f" ({JUNK_PARKERS} consumers of decisions + one per redrive)"
        )
    failed = [c for c in f.get("operator_commands", ()) if c["rc"] != 0]
    if failed:
        report.violate(f"operator commands that failed: {failed}")


def main() -> int:
    import logging

    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # the broker restart is expected: no connection noise
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="300 applications, one SIGKILL of each service")
    parser.add_argument("--applications", type=int)
    parser.add_argument("--kills-per-service", type=int)
    parser.add_argument("--rate", type=float, help="submissions per second (default: 40 full, 25 small)")
    parser.add_argument("--replicas", type=int, help="processes of every service (default: 2 full, 1 small)")
    parser.add_argument("--stalls", type=int, help="SIGSTOP/SIGCONT pauses (default: one per service full, 0 small)")
    parser.add_argument("--stall-s", type=float, default=20, help="how long a pause lasts (default 20 s)")
    parser.add_argument("--releases", type=int, default=50, help="grants the operator withdraws during the run")
    parser.add_argument("--no-operator", action="store_true", help="no operator commands during the run")
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
        replicas=args.replicas or (1 if args.small else 2),
        stalls=args.stalls if args.stalls is not None else (0 if args.small else len(SERVICES)),
        stall_s=args.stall_s,
        operator=not args.no_operator,
        releases=args.releases,
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
            report = run_stoppable(run(bootstrap, server, plan, log_dir, infra))
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
