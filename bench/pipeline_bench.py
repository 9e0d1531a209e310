"""`make bench`: the pipeline against its limits, on the real Kafka and PostgreSQL of this machine.

    KAFKA_BOOTSTRAP_SERVERS=... DATABASE_URL=... python bench/pipeline_bench.py [--applications 5000]

In one run:
1. the limit: a bare aiokafka consume-and-produce relay over four hops (bench/relay_limit.py) with
   messages of the pipeline's mean record size, and pgbench's TPS (TPC-B-like, 4 clients) on the same
   PostgreSQL;
2. the pipeline: N applications (every scheme's sample, ~8 % invalid, 2 % malformed; bench/workload.py)
   published on the submitted topic as fast as the broker takes them, the services as separate
   processes, until every applicant's NotificationSent (malformed input: its ApplicationRejected);
   applications per second, and the ratio to the relay limit; notify also delivers webhooks to an
   agency subscribed to every application outcome (bench/webhook_sink.py, its own process, which
   verifies each signature; `--no-webhooks`: e-mail only);
3. latency at half of that rate: p50/p95/p99 from the submitted record's broker timestamp to the
   NotificationSent record's;
4. peak RSS (VmHWM) of every service; the time to reset a budget year with 100,000 grants
   (bench/budget_reset_bench.py, the real reset handler).
Prints a summary and writes bench/results/pipeline-<time>.json. A benchmark: it reports, it does not fail.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import re
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402

from bench import cpu, relay_limit  # noqa: E402
from bench.cpu import per_application_ms  # noqa: E402
from bench.harness import (  # noqa: E402
    Sent,
    Tracker,
    WebhookSink,
    percentile,
    pipeline,
    producer,
    run_stoppable,
    say,
    submit,
)
from bench.workload import submissions  # noqa: E402
from shared.topics import Topic, topic_name  # noqa: E402

RESULTS = ROOT / "bench" / "results"
TARGETS = {  # issue 12
    "apps_per_s": 600,
    "p99_ms_at_half_load": 100,
    "rss_mib_per_service": 150,
    "reset_100k_s": 3,
}
#: The hops of an application, in order, whose records' broker timestamps give the per-hop latency.
HOPS = (
    ("submitted", None),
    ("received", Topic.APPLICATION_RECEIVED),
    ("decided", Topic.ELIGIBILITY_DECIDED),
    ("committed or refused", (Topic.GRANT_COMMITTED, Topic.GRANT_REFUSED)),
    ("e-mail sent", Topic.NOTIFICATION_SENT),
)

# Deployment settings of the services for throughput (no business rule changes): bigger consumer batches
# and relay batches, more notify workers. Override any of them from the environment.
TUNING = {
    "CONSUMER_BATCH_MAX": "500",
    "CONSUMER_BATCH_TIMEOUT_MS": "20",
    "CONSUMER_LINGER_MS": "10",
    "OUTBOX_BATCH_SIZE": "1000",
    "OUTBOX_POLL_INTERVAL_S": "0.2",
    "NOTIFY_DISPATCH_WORKERS": "8",
    "NOTIFY_POLL_INTERVAL_S": "0.1",
    "DB_POOL_MAX": "12",
}


async def pipeline_phase(args: argparse.Namespace, bootstrap: str, server: str, log_dir: Path) -> dict[str, Any]:
    run = secrets.token_hex(3)
    pii = secrets.token_hex(4)
    tuning = {k: os.environ.get(k, v) for k, v in TUNING.items()}
    out: dict[str, Any] = {"tuning": tuning}
    # tuning holds service variables, never `maildir`, the one keyword of pipeline that is not a str
    stack_cm = pipeline(bootstrap, server, log_dir, name=f"cg_bench_{run}", webhooks=args.webhooks, **tuning)  # type: ignore[arg-type]
    async with stack_cm as stack:
        topic = topic_name(Topic.APPLICATION_SUBMITTED, stack.prefix)
        prod = producer(bootstrap)
        await prod.start()
        meter = cpu_meter(stack.pids(), bootstrap, server)
        out["cpu_processes"] = {name: len(list(pids())) for name, pids in meter.groups.items()}
        hop_topics = (Topic.APPLICATION_RECEIVED, Topic.ELIGIBILITY_DECIDED, Topic.GRANT_COMMITTED, Topic.GRANT_REFUSED)
        try:
            async with Tracker(bootstrap, stack.prefix, hops=hop_topics) as tracker:
                # Warm-up: connections, caches, consumer groups settled.
                sent: dict[int, Sent] = {}
                await submit(prod, topic, submissions(args.warmup, f"W{run}", pii), sent)
                if not await tracker.wait_all(sent.values(), 120):
                    say("bench", "warm-up did not finish in 120 s")

                # 1. Throughput: N as fast as the broker takes them.
                say("bench", f"throughput: {args.applications:,} applications")
                sent = {}
                items = submissions(args.applications, f"T{run}", pii)
                before = meter.snapshot()
                load_before = os.getloadavg()[0]
                started_ms = time.time() * 1000
                await submit(prod, topic, items, sent)
                finished = await tracker.wait_all(sent.values(), args.timeout)
                used = meter.since(before)
                ends = [t for s in sent.values() if (t := tracker.done(s)) is not None]
                first = min(s.timestamp_ms for s in sent.values())
                elapsed_s = (max(ends) - first) / 1000 if ends else float("nan")
                out["throughput"] = {
                    "applications": len(items),
                    "completed": len(ends),
                    "all_completed": finished,
                    "kinds": {k: sum(1 for i in items if i.kind == k) for k in ("valid", "invalid", "malformed")},
                    "submit_s": round((max(s.timestamp_ms for s in sent.values()) - started_ms) / 1000, 2),
                    "elapsed_s": round(elapsed_s, 2),
                    "apps_per_s": round(len(ends) / elapsed_s, 1),
                    # CPU per application of each process (group), over the whole throughput phase
                    # (the driver: this benchmark's submitter and tracker).
                    "cpu_s": used,
                    "cpu_ms_per_application": per_application_ms(used, len(ends)),
                    "cpu_ms_per_application_total": round(1000 * sum(used.values()) / max(1, len(ends)), 3),
                    "cpu_busy_of_machine": round(sum(used.values()) / (elapsed_s * (os.cpu_count() or 1)), 3),
                    "hops_done": hop_finish(tracker, list(sent.values())),
                    # The machine is shared: the 1-minute load average before and after the phase.
                    "load_average": [round(load_before, 1), round(os.getloadavg()[0], 1)],
                }
                say("bench", f"throughput: {out['throughput']}")
                # The applicants' e-mails end the burst, but messages it owes may still be due (webhooks
                # behind them): the next phase starts once notify has none left, or it measures them.
                out["throughput"]["notify_backlog"] = await notify_backlog(stack.database_url, args.timeout)
                say("bench", f"after the burst: {out['throughput']['notify_backlog']}")

                # 2. Latency at half of the measured maximum rate (or at --half-load-rate: runs compared
                # at one rate, since the burst's rate moves with the machine's hour).
                rate = args.half_load_rate or max(1.0, out["throughput"]["apps_per_s"] / 2)
                count = max(200, int(rate * args.half_load_s))
                say("bench", f"half load: {count:,} applications at {rate:.0f}/s")
                sent = {}
                before = meter.snapshot()
                await submit(prod, topic, submissions(count, f"H{run}", pii), sent, rate=rate)
                await tracker.wait_all(sent.values(), args.timeout)
                used = meter.since(before)
                done = [(s.timestamp_ms, t) for s in sent.values() if (t := tracker.done(s)) is not None]
                latencies = [t - submitted for submitted, t in done]
                half_s = (max(t for _, t in done) - min(s for s, _ in done)) / 1000 if done else float("nan")
                out["half_load"] = {
                    "rate_per_s": round(rate, 1),
                    "applications": count,
                    "completed": len(latencies),
                    "p50_ms": percentile(latencies, 50),
                    "p95_ms": percentile(latencies, 95),
                    "p99_ms": percentile(latencies, 99),
                    "max_ms": max(latencies) if latencies else None,
                    "hops": hop_latencies(tracker, list(sent.values())),
                    # At a steady rate the batches are small: CPU per application is not the burst's.
                    "cpu_ms_per_application": per_application_ms(used, len(latencies)),
                    "cpu_ms_per_application_total": round(1000 * sum(used.values()) / max(1, len(latencies)), 3),
                    "cpu_busy_of_machine": round(sum(used.values()) / (half_s * (os.cpu_count() or 1)), 3),
                }
                say("bench", f"half load: {out['half_load']}")
        finally:
            await prod.stop()
        out["peak_rss_mib"] = stack.peak_rss_mib()
        out["record_bytes"] = await mean_record_bytes(stack.database_url, bootstrap, stack.prefix)
    # What the agency's receiver got over the whole run (warm-up included), once notify has stopped.
    out["webhooks"] = {"subscribed": list(WebhookSink.EVENTS), **stack.webhook_stats} if args.webhooks else None
    return out


async def notify_backlog(database_url: str, timeout: float) -> dict[str, Any]:
    """What notify still had due when the burst's last e-mail went out, and how long it took to send it."""
    conn = await asyncpg.connect(database_url)
    try:
        query = """SELECT count(*) FILTER (WHERE status = 'scheduled') AS due, count(*) FILTER (WHERE status = 'dead') AS dead
                   FROM notify.notifications"""
        started = time.monotonic()

        async def counts() -> tuple[int, int]:
            row = await conn.fetchrow(query)
            assert row is not None  # an aggregate always has its row
            return int(row["due"]), int(row["dead"])

        first_due, dead = await counts()
        due = first_due
        while due and time.monotonic() - started < timeout:
            await asyncio.sleep(0.1)
            due, dead = await counts()
        return {"due": first_due, "drained_s": round(time.monotonic() - started, 2), "left": due, "dead": dead}
    finally:
        await conn.close()


def cpu_meter(pids: dict[str, int], bootstrap: str, server: str) -> cpu.Meter:
    """The services, the mail sink, the Kafka broker, the PostgreSQL server (postmaster + children) and
    this driver, each a group of the meter."""
    meter = cpu.Meter()
    for name, pid in pids.items():
        meter.add(name, partial(list, (pid,)))
    broker = cpu.listener_pid(cpu.port_of(bootstrap))
    meter.add("kafka broker", lambda: [broker] if broker else [])
    meter.add("postgresql", cpu.postgres_pids(cpu.listener_pid(urlsplit(server).port or 5432)))
    meter.add("bench driver", lambda: [os.getpid()])
    return meter


def hop_stamps(tracker: Tracker, sent: list[Sent]) -> list[dict[str, int]]:
    """Per application: the broker timestamp at which it reached each hop it reached (HOPS' names)."""
    stamps: list[dict[str, int]] = []
    for s in sent:
        app = s.submission.application_id
        if app is None:
            continue
        row = {"submitted": s.timestamp_ms}
        for name, topics in HOPS[1:]:
            if topics is Topic.NOTIFICATION_SENT:  # the applicant's e-mail (the tracker's end of the path)
                at = tracker.done_at.get(app)
            else:
                found = [tracker.seen_at.get(t, {}).get(app) for t in (topics if isinstance(topics, tuple) else (topics,))]
                at = min((f for f in found if f is not None), default=None)
            if at is not None:
                row[name] = at
        stamps.append(row)
    return stamps


def hop_latencies(tracker: Tracker, sent: list[Sent]) -> dict[str, dict[str, float | int]]:
    """p50/p95/p99 of each hop (the previous hop's record to this one's, broker timestamps) and end to end."""
    stamps = hop_stamps(tracker, sent)
    out: dict[str, dict[str, float | int]] = {}
    names = [name for name, _ in HOPS]
    for before, after in itertools.pairwise(names):
        values = [row[after] - row[before] for row in stamps if before in row and after in row]
        out[f"{before} -> {after}"] = _quantiles(values)
    out["end to end"] = _quantiles([row[names[-1]] - row[names[0]] for row in stamps if names[-1] in row])
    return out


def hop_finish(tracker: Tracker, sent: list[Sent]) -> dict[str, dict[str, float | int]]:
    """In a burst, when each hop had passed on its last application (seconds after the first was
    submitted) and at what rate: the hop whose finish lags the one before it most is the one that
    holds the burst back (a queue builds in front of it)."""
    stamps = hop_stamps(tracker, sent)
    if not stamps:
        return {}
    first = min(row["submitted"] for row in stamps)
    out: dict[str, dict[str, float | int]] = {}
    for name, _ in HOPS:
        reached = [row[name] for row in stamps if name in row]
        if reached:
            last_s = (max(reached) - first) / 1000
            out[name] = {"n": len(reached), "last_s": round(last_s, 2), "per_s": round(len(reached) / max(last_s, 1e-3), 1)}
    return out


def _quantiles(values: Sequence[float]) -> dict[str, float | int]:
    return {"n": len(values), **{f"p{p}_ms": percentile(values, p) for p in (50, 95, 99)}}


async def mean_record_bytes(database_url: str, bootstrap: str, prefix: str) -> int:
    """The mean size (value + headers) of the records on the four hops' topics of this run."""
    from aiokafka import AIOKafkaConsumer

    names = [
        topic_name(t, prefix)
        for t in (
            Topic.APPLICATION_SUBMITTED,
            Topic.APPLICATION_RECEIVED,
            Topic.ELIGIBILITY_DECIDED,
            Topic.GRANT_COMMITTED,
            Topic.NOTIFICATION_SENT,
        )
    ]
    from deploy.local.kafka_users import client_options
    from shared.acl import ADMIN

    consumer = AIOKafkaConsumer(  # a measurement across private and public topics: as the admin
        *names,
        **client_options(ADMIN, bootstrap),
        group_id=f"bench-size-{secrets.token_hex(3)}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    sizes: list[int] = []
    try:
        deadline = time.monotonic() + 20
        while len(sizes) < 5000 and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=300, max_records=1000)).values():
                sizes += [len(r.value or b"") + sum(len(k) + len(v) for k, v in r.headers) for r in records]
    finally:
        await consumer.stop()
    return int(sum(sizes) / len(sizes)) if sizes else 2500


def pgbench(server: str, seconds: int) -> dict[str, Any]:
    """pgbench's TPS (default TPC-B-like script, 4 clients, 2 threads) on a scratch database of the same server."""
    name = f"cg_pgbench_{secrets.token_hex(3)}"
    parts = urlsplit(server)
    url = urlunsplit(parts._replace(path=f"/{name}"))

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(server)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    try:
        subprocess.run(["pgbench", "-q", "-i", "-s", "10", url], check=True, capture_output=True, timeout=300)
        result = subprocess.run(
            ["pgbench", "-c", "4", "-j", "2", "-T", str(seconds), url],
            check=True,
            capture_output=True,
            text=True,
            timeout=seconds + 120,
        )
        # (ignore below) pgbench always prints tps; a crash here is right
        tps = float(re.search(r"tps = ([\d.]+)", result.stdout).group(1))  # type: ignore[union-attr]
        latency = re.search(r"latency average = ([\d.]+) ms", result.stdout)
        return {
            "tps": round(tps, 1),
            "clients": 4,
            "seconds": seconds,
            "scale": 10,
            "latency_avg_ms": float(latency.group(1)) if latency else None,
        }
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def reset_bench(server: str, grants: int) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "budget_reset_bench.py"), "--grants", str(grants)],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": server},
        capture_output=True,
        text=True,
        timeout=1800,
    )
    resets = [float(s) for s in re.findall(r"^reset \S+: ([\d.]+) s", result.stdout, re.M)]
    return {
        "grants": grants,
        "reset_s": resets,
        "worst_s": max(resets) if resets else None,
        "ok": result.returncode == 0 and "reconcile: ok" in result.stdout,
        "output": result.stdout.strip().splitlines(),
    }


def summary(r: dict[str, Any]) -> str:
    t, h, lim = r["pipeline"]["throughput"], r["pipeline"]["half_load"], r["relay_limit"]
    ratio = r["ratio_to_relay_limit"]
    lines = [
        "",
        f"clustergrants pipeline bench  {r['started_at']}  ({os.cpu_count()} cores)",
        f"  relay limit (bare aiokafka, 4 hops, {lim['message_bytes']} B, {lim['producer']}): "
        f"{lim['msgs_per_s']:,.0f} msgs/s; CPU per message: relays {lim['cpu_ms_per_message']['relays']} ms, "
        f"broker {lim['cpu_ms_per_message']['kafka']} ms",
        f"  pgbench (TPC-B-like, 4 clients):              {r['pgbench']['tps']:,.0f} TPS",
        f"  pipeline: {t['completed']:,}/{t['applications']:,} applications in {t['elapsed_s']} s, with e-mail"
        + (" and webhooks" if r["pipeline"].get("webhooks") else " only (--no-webhooks)"),
        f"  applications per second:  {t['apps_per_s']:,.1f}   (target >= {TARGETS['apps_per_s']:,})",
        f"  ratio to the relay limit: {ratio:.1%}",
        f"  CPU per application: {t['cpu_ms_per_application_total']} ms in all "
        f"(machine {t['cpu_busy_of_machine']:.0%} busy with these processes; load average {t['load_average']}):",
        *(f"      {name:<14} {ms:7.3f} ms" for name, ms in t["cpu_ms_per_application"].items()),
        "  the burst, hop by hop (the last application past each hop, seconds after the first was submitted):",
        *(
            f"      {hop:<22} {d['last_s']:7.2f} s  {d['per_s']:8,.1f}/s  (n {d['n']:,})"
            for hop, d in t.get("hops_done", {}).items()
        ),
        *(
            [
                f"      then notify's messages still due: {b['due']:,}, sent within {b['drained_s']} s "
                f"({b['left']:,} left, {b['dead']:,} dead)"
            ]
            if (b := t.get("notify_backlog"))
            else []
        ),
        f"  latency at half load ({h['rate_per_s']:.0f}/s, {h['completed']:,} apps): p50 {h['p50_ms']:.0f} ms, "
        f"p95 {h['p95_ms']:.0f} ms, p99 {h['p99_ms']:.0f} ms   (target p99 < {TARGETS['p99_ms_at_half_load']} ms)",
        *(
            f"      {hop:<36} p50 {q['p50_ms']:6.0f}  p95 {q['p95_ms']:6.0f}  p99 {q['p99_ms']:6.0f} ms  (n {q['n']:,})"
            for hop, q in h["hops"].items()
        ),
        f"    CPU per application at half load: {h['cpu_ms_per_application_total']} ms in all "
        f"(machine {h['cpu_busy_of_machine']:.0%} busy with these processes):",
        "      " + ", ".join(f"{name} {ms:.3f}" for name, ms in h["cpu_ms_per_application"].items()),
        *(
            [
                f"  webhooks received by the agency over the run: {w.get('deliveries', 0):,} "
                f"({w.get('distinct_ids', 0):,} distinct ids, {w.get('bad_signatures', 0)} signatures not verified)"
            ]
            if (w := r["pipeline"].get("webhooks"))
            else []
        ),
        "  peak RSS: "
        + ", ".join(f"{k} {v:.0f} MiB" for k, v in r["pipeline"]["peak_rss_mib"].items())
        + f"   (target < {TARGETS['rss_mib_per_service']} MiB)",
    ]
    if r.get("reset"):
        lines.append(
            f"  reset of a budget year with {r['reset']['grants']:,} grants: {r['reset']['worst_s']} s "
            f"(worst of {r['reset']['reset_s']})   (target < {TARGETS['reset_100k_s']} s)"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--applications", type=int, default=int(os.environ.get("BENCH_APPLICATIONS", "5000")))
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--half-load-s", type=float, default=20)
    parser.add_argument(
        "--half-load-rate",
        type=float,
        default=None,
        help="Applications per second of the latency phase instead of half the burst's (to compare runs at one rate).",
    )
    parser.add_argument("--timeout", type=float, default=600, help="Longest wait for a phase to complete.")
    parser.add_argument("--relay-messages", type=int, default=30_000)
    parser.add_argument("--pgbench-s", type=int, default=15)
    parser.add_argument("--reset-grants", type=int, default=100_000, help="0: skip the reset bench.")
    parser.add_argument(
        "--webhooks",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="An agency subscribed by webhook to every application outcome (bench/webhook_sink.py); --no-webhooks: e-mail only.",
    )
    args = parser.parse_args()
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    server = os.environ.get("DATABASE_URL")
    if not bootstrap or not server:
        sys.exit("KAFKA_BOOTSTRAP_SERVERS and DATABASE_URL must be set (make bench starts both)")
    started_at = datetime.now(UTC)
    result: dict[str, Any] = {
        "started_at": started_at.isoformat(timespec="seconds"),
        "cores": os.cpu_count(),
        "targets": TARGETS,
        "args": vars(args),
    }
    with tempfile.TemporaryDirectory(prefix="cg-bench-") as tmp:
        say("bench", f"pipeline (service logs in {tmp})")
        result["pipeline"] = run_stoppable(pipeline_phase(args, bootstrap, server, Path(tmp)))
    say("bench", f"relay limit with {result['pipeline']['record_bytes']} B records")
    result["relay_limit"] = asyncio.run(relay_limit.measure(bootstrap, args.relay_messages, result["pipeline"]["record_bytes"]))
    say("bench", f"pgbench for {args.pgbench_s} s")
    result["pgbench"] = pgbench(server, args.pgbench_s)
    if args.reset_grants:
        say("bench", f"budget reset with {args.reset_grants:,} grants")
        result["reset"] = reset_bench(server, args.reset_grants)
    result["ratio_to_relay_limit"] = round(
        result["pipeline"]["throughput"]["apps_per_s"] / result["relay_limit"]["msgs_per_s"], 4
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"pipeline-{started_at:%Y%m%dT%H%M%SZ}.json"
    path.write_text(json.dumps(result, indent=2, default=str))
    print(summary(result))
    print(f"  results: {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
