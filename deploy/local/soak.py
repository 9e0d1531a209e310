"""`make soak`: the pipeline at a steady rate for a long time; memory and lag must stay flat.

    python deploy/local/stack.py -- python -m deploy.local.soak                 # 30 min, half the benched rate
    python deploy/local/stack.py -- python -m deploy.local.soak --minutes 2 --warmup 1 --rate 8

The services run as processes (bench/harness.py) on a fresh database and topic prefix of the
Kafka and PostgreSQL that stack.py started; applications of every scheme (about 8 % invalid, 2 %
malformed, bench/workload.py) are submitted at `--rate` per second, by default half of the throughput
of the newest `bench/results/pipeline-*.json` (`make bench`), or DEFAULT_RATE when there is none.

Every `--sample-s` (60) it records: RSS of each service process (VmRSS), consumer lag of each group
(end offset minus committed offset over this run's partitions), outbox backlog of each schema, notify's
messages due and not yet sent (a queue inside notify that the consumer lag does not show),
PostgreSQL database size per 10,000 applications submitted, and the p99 latency (broker timestamp of
the submission to that of the applicant's e-mail NotificationSent) of what completed in the interval.

Verdict (`verdict()`, exit 1 if it fails): after the warm-up, no service's memory may grow by more than
10 % (median of the last three samples against the first sample after warm-up), and no group's lag
may keep growing (rising at each of the last `LAG_WINDOW` samples by more than `LAG_FLOOR` in all), and
neither may notify's due messages.
Writes bench/results/soak-<time>.json (every sample and the verdict) and soak-<time>.png.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from shared.topics import SERVICES  # noqa: E402

RESULTS = ROOT / "bench" / "results"
#: Half of the README's `make bench` figures (198-232 applications/s): used when no bench result exists.
DEFAULT_RATE = 115.0
MEMORY_GROWTH_LIMIT = 0.10
LAG_WINDOW = 5  # samples
LAG_FLOOR = 50  # records: a rise smaller than this over the window is noise, not a backlog

SCHEMAS = SERVICES


# --- the verdict (pure; tests/unit/test_soak_verdict.py) -----------------------------------------


@dataclass
class Verdict:
    ok: bool
    failures: list[str] = field(default_factory=list)
    memory_growth: dict[str, float] = field(default_factory=dict)  # service -> fraction after warm-up
    lag_growing: dict[str, bool] = field(default_factory=dict)


def memory_growth(series: Sequence[float]) -> float:
    """Growth of the post-warm-up series: median of the last three samples against the first one."""
    if len(series) < 2 or series[0] <= 0:
        return 0.0
    return statistics.median(series[-3:]) / series[0] - 1


def lag_keeps_growing(series: Sequence[float], window: int = LAG_WINDOW, floor: float = LAG_FLOOR) -> bool:
    """Lag that keeps growing: each of the last `window` samples above the one before, by > `floor` in all."""
    if len(series) < window + 1:
        return False
    tail = list(series[-(window + 1) :])
    return all(b > a for a, b in itertools.pairwise(tail)) and tail[-1] - tail[0] > floor


def verdict(
    rss: Mapping[str, Sequence[float]],
    lag: Mapping[str, Sequence[float]],
    warmup_samples: int,
    limit: float = MEMORY_GROWTH_LIMIT,
    window: int = LAG_WINDOW,
    floor: float = LAG_FLOOR,
    queues: Mapping[str, Sequence[float]] | None = None,
) -> Verdict:
    """Samples are per minute, oldest first; the first `warmup_samples` of each series are not judged.

    `queues`: work waiting inside a service rather than in Kafka (notify's due messages): a backlog
    there keeps the consumer lag at 0 while the applicants' e-mails fall behind, so it is judged alike."""
    out = Verdict(ok=True)
    for name, series in rss.items():
        growth = round(memory_growth(list(series)[warmup_samples:]), 4)  # 10 % is 10 %, not 10.0000001 %
        out.memory_growth[name] = growth
        if growth > limit:
            out.failures.append(f"{name}: memory grew {growth:.1%} after warm-up (limit {limit:.0%})")
    for group, series in lag.items():
        growing = lag_keeps_growing(list(series)[warmup_samples:], window, floor)
        out.lag_growing[group] = growing
        if growing:
            tail = list(series)[-window - 1 :]
            out.failures.append(f"{group}: consumer lag kept growing over the last {window} samples: {tail}")
    for queue, series in (queues or {}).items():
        growing = lag_keeps_growing(list(series)[warmup_samples:], window, floor)
        out.lag_growing[queue] = growing
        if growing:
            tail = list(series)[-window - 1 :]
            out.failures.append(f"{queue}: backlog kept growing over the last {window} samples: {tail}")
    out.ok = not out.failures
    return out


# --- sampling ------------------------------------------------------------------------------------


def rss_mib(pid: int) -> float | None:
    with contextlib.suppress(OSError, ValueError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    return None


def default_rate() -> tuple[float, str]:
    """Half of the newest `make bench` throughput, or DEFAULT_RATE."""
    for path in sorted(RESULTS.glob("pipeline-*.json"), reverse=True):
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            apps = float(json.loads(path.read_text())["pipeline"]["throughput"]["apps_per_s"])
            return round(apps / 2, 1), f"half of {apps:.1f}/s in {path.name}"
    return DEFAULT_RATE, f"DEFAULT_RATE (half of the README's make bench figure); no {RESULTS.name}/pipeline-*.json"


async def group_lag(bootstrap: str, prefix: str, groups: Sequence[str]) -> dict[str, int]:
    """End offset minus committed offset, summed over this run's partitions each group reads."""
    from aiokafka import AIOKafkaConsumer
    from aiokafka.admin import AIOKafkaAdminClient

    from deploy.local.kafka_users import client_options
    from shared.acl import ADMIN

    admin = AIOKafkaAdminClient(**client_options(ADMIN, bootstrap))
    reader = AIOKafkaConsumer(**client_options(ADMIN, bootstrap), enable_auto_commit=False)
    await admin.start()
    await reader.start()
    try:
        out: dict[str, int] = {}
        for group in groups:
            committed = await admin.list_consumer_group_offsets(group)
            mine = {tp: meta.offset for tp, meta in committed.items() if tp.topic.startswith(prefix) and meta.offset >= 0}
            if not mine:
                out[group] = 0
                continue
            ends = await reader.end_offsets(list(mine))
            out[group] = int(sum(max(0, ends[tp] - offset) for tp, offset in mine.items()))
        return out
    finally:
        await reader.stop()
        await admin.close()


async def database_figures(database_url: str) -> tuple[dict[str, int], int, int]:
    """Outbox rows per schema, the database's size, and notify's messages due and not yet sent."""
    import asyncpg

    conn = await asyncpg.connect(database_url)
    try:
        backlog: dict[str, int] = {s: int(await conn.fetchval(f"SELECT count(*) FROM {s}.outbox")) for s in SCHEMAS}
        size = int(await conn.fetchval("SELECT pg_database_size(current_database())"))
        due = int(
            await conn.fetchval(
                "SELECT count(*) FROM notify.notifications WHERE status = 'scheduled' AND next_attempt_at <= now()"
            )
        )
        return backlog, size, due
    finally:
        await conn.close()


def draw(path: Path, samples: list[dict[str, Any]], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    minutes = [s["minute"] for s in samples]
    fig, axes = plt.subplots(5, 1, figsize=(9, 13), sharex=True)
    panels = [("rss_mib", "RSS (MiB)"), ("lag", "consumer lag (records)"), ("outbox", "outbox backlog (rows)")]
    for ax, (key, label) in zip(axes, panels, strict=False):
        for name in sorted({n for s in samples for n in s[key]}):
            ax.plot(minutes, [s[key].get(name) for s in samples], marker=".", label=name)
        ax.set_ylabel(label)
        ax.legend(fontsize=7, loc="upper left")
    axes[2].plot(minutes, [s.get("notify_due") for s in samples], marker="x", label="notify: messages due, not sent")
    axes[2].legend(fontsize=7, loc="upper left")
    axes[3].plot(minutes, [s["pg_mib_per_10k"] for s in samples], marker=".")
    axes[3].set_ylabel("PostgreSQL MiB / 10k apps")
    axes[4].plot(minutes, [s["p99_ms"] for s in samples], marker=".")
    axes[4].set_ylabel("p99 latency (ms)")
    axes[4].set_xlabel("minute")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


# --- the run -------------------------------------------------------------------------------------


async def soak(args: argparse.Namespace, bootstrap: str, server: str, log_dir: Path) -> dict[str, Any]:
    from bench.harness import BENCH_PORTAL, Sent, Tracker, percentile, pipeline, producer, say
    from bench.pipeline_bench import TUNING
    from bench.workload import submission
    from shared.cloudevents import portal_headers
    from shared.events import ApplicationSubmitted
    from shared.topics import Topic, topic_name

    run = secrets.token_hex(3)
    pii = secrets.token_hex(4)
    tuning = {k: os.environ.get(k, v) for k, v in TUNING.items()}
    samples: list[dict[str, Any]] = []
    async with (
        pipeline(bootstrap, server, log_dir, name=f"cg_soak_{run}", **tuning) as stack,  # type: ignore[arg-type]  # tuning holds service variables only (str)
        Tracker(bootstrap, stack.prefix) as tracker,
    ):
        topic = topic_name(Topic.APPLICATION_SUBMITTED, stack.prefix)
        groups = [f"clustergrants.{name}" for name in stack.processes.procs]
        prod = producer(bootstrap)
        await prod.start()
        sent: dict[int, Sent] = {}
        started = time.monotonic()
        end = started + args.minutes * 60
        pending: list[tuple[Sent, asyncio.Future[Any]]] = []
        judged: set[int] = set()
        next_sample = started + args.sample_s
        _, base_bytes, _ = await database_figures(stack.database_url)  # the empty schemas, not the applications'
        index = 0
        try:
            while time.monotonic() < end:
                now = time.monotonic()
                due = int((now - started) * args.rate)
                while index < due:
                    item = submission(index, f"S{run}", pii)
                    record = sent[index] = Sent(item)
                    key = (item.application_id or f"malformed-{index}").encode()
                    headers = portal_headers(ApplicationSubmitted, source=BENCH_PORTAL, event_id=f"submission-{index}")
                    pending.append((record, await prod.send(topic, item.body, key=key, headers=headers)))
                    index += 1
                for record, future in pending:
                    meta = await future
                    record.timestamp_ms, record.position = meta.timestamp, f"{meta.topic}:{meta.partition}:{meta.offset}"
                pending.clear()
                if time.monotonic() >= next_sample:
                    next_sample += args.sample_s
                    latencies: list[float] = []
                    for i, s in sent.items():
                        if i not in judged and s.timestamp_ms and (done := tracker.done(s)) is not None:
                            judged.add(i)
                            latencies.append(done - s.timestamp_ms)
                    backlog, size, due = await database_figures(stack.database_url)
                    sample = {
                        "minute": round((time.monotonic() - started) / 60, 2),
                        "submitted": len(sent),
                        "completed": len(judged),
                        "rss_mib": {n: rss_mib(p.pid) for n, p in stack.processes.procs.items()},
                        "lag": await group_lag(bootstrap, stack.prefix, groups),
                        "outbox": backlog,
                        "notify_due": due,
                        "pg_bytes": size,
                        # what the applications added (the empty schemas left out), per 10,000 submitted
                        "pg_mib_per_10k": round((size - base_bytes) / 2**20 / max(1, len(sent)) * 10_000, 1),
                        "p99_ms": round(percentile(latencies, 99), 0) if latencies else None,
                    }
                    samples.append(sample)
                    say("soak", json.dumps(sample))
                await asyncio.sleep(0.05)
        finally:
            await prod.stop()
        rss = {n: [s["rss_mib"].get(n) or 0.0 for s in samples] for n in stack.processes.procs}
    lag = {g: [s["lag"].get(g, 0) for s in samples] for g in groups}
    judgement = verdict(rss, lag, args.warmup, queues={"notify due messages": [s["notify_due"] for s in samples]})
    return {"run": run, "samples": samples, "verdict": judgement.__dict__, "tuning": tuning}


def main() -> int:
    import logging

    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    rate, why = default_rate()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30, help="duration (default 30)")
    parser.add_argument("--rate", type=float, default=rate, help=f"submissions per second (default {rate}: {why})")
    parser.add_argument("--warmup", type=int, default=5, help="samples not judged at the start (default 5)")
    parser.add_argument("--sample-s", type=float, default=60, help="seconds between samples (default 60)")
    parser.add_argument("--logs", type=Path, help="keep the service logs here")
    args = parser.parse_args()
    bootstrap, server = os.environ["KAFKA_BOOTSTRAP_SERVERS"], os.environ["DATABASE_URL"]
    started_at = datetime.now(UTC)
    with tempfile.TemporaryDirectory(prefix="cg-soak-") as tmp:
        from bench.harness import run_stoppable

        result = run_stoppable(soak(args, bootstrap, server, args.logs or Path(tmp)))
    result.update(
        command=" ".join(["python -m deploy.local.soak", *sys.argv[1:]]),
        rate_per_s=args.rate,
        rate_source=why if args.rate == rate else "--rate",
        minutes=args.minutes,
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = RESULTS / f"soak-{started_at:%Y%m%dT%H%M%SZ}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2, default=str))
    draw(stem.with_suffix(".png"), result["samples"], f"soak {args.minutes:g} min at {args.rate:g}/s")
    v = result["verdict"]
    print(json.dumps({"verdict": v, "last": result["samples"][-1] if result["samples"] else None}, indent=2, default=str))
    print(f"  results: {stem.relative_to(ROOT)}.json / .png")
    if not v["ok"]:
        print(f"SOAK FAILED: {v['failures']}")
        return 1
    print(f"soak ok: {args.minutes:g} min at {args.rate:g}/s, memory and lag flat after warm-up")
    return 0


if __name__ == "__main__":
    sys.exit(main())
