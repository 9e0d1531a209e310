"""Where the last hop's time goes: GrantCommitted/GrantRefused -> the applicant's e-mail NotificationSent.

    KAFKA_BOOTSTRAP_SERVERS=... DATABASE_URL=... python bench/last_hop_probe.py [--applications 600 --rate 30]

Runs the four services (the bench's tuning), submits N applications at a steady rate and splits each grant
e-mail's last hop with notify's own timestamps (same machine clock as the broker's CreateTime):

- consume: the GrantCommitted/Refused record's timestamp -> `scheduled_at` (notify's inbox transaction);
- decision: whether notify stored the application's EligibilityDecided (`notify.decisions.stored_at`)
  after the grant e-mail was scheduled, i.e. the e-mail found no decision and was postponed;
- dispatch: `scheduled_at` -> `sent_at` (claimed, rendered, sent, the dispatcher's batch committed);
- relay: `sent_at` -> the NotificationSent record's timestamp (notify's outbox relay).

A diagnostic: it prints quantiles, it does not fail.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402

from bench.harness import Tracker, percentile, pipeline, producer, run_stoppable, say, submit  # noqa: E402
from bench.pipeline_bench import TUNING  # noqa: E402
from bench.workload import submissions  # noqa: E402
from shared.topics import Topic, topic_name  # noqa: E402


def quantiles(name: str, values: Sequence[float]) -> str:
    if not values:
        return f"  {name:<44} n 0"
    return (
        f"  {name:<44} n {len(values):5}  p50 {percentile(values, 50):7.0f}  p95 {percentile(values, 95):7.0f}  "
        f"p99 {percentile(values, 99):7.0f}  max {max(values):7.0f} ms"
    )


async def probe(args: argparse.Namespace, bootstrap: str, server: str, log_dir: Path) -> None:
    run = secrets.token_hex(3)
    pii = secrets.token_hex(4)
    tuning = {k: os.environ.get(k, v) for k, v in TUNING.items()}
    hops = (Topic.GRANT_COMMITTED, Topic.GRANT_REFUSED, Topic.ELIGIBILITY_DECIDED)
    stack_cm = pipeline(bootstrap, server, log_dir, name=f"cg_probe_{run}", webhooks=args.webhooks, **tuning)  # type: ignore[arg-type]
    async with stack_cm as stack:
        topic = topic_name(Topic.APPLICATION_SUBMITTED, stack.prefix)
        prod = producer(bootstrap)
        await prod.start()
        try:
            async with Tracker(bootstrap, stack.prefix, hops=hops) as tracker:
                sent: dict[int, Any] = {}
                await submit(prod, topic, submissions(args.warmup, f"W{run}", pii), sent)
                await tracker.wait_all(sent.values(), 120)
                sent = {}
                say("probe", f"{args.applications} applications at {args.rate}/s")
                await submit(prod, topic, submissions(args.applications, f"P{run}", pii), sent, rate=args.rate)
                await tracker.wait_all(sent.values(), 300)
                apps = {s.submission.application_id for s in sent.values() if s.submission.application_id}
        finally:
            await prod.stop()
        conn = await asyncpg.connect(stack.database_url)
        try:
            rows = await conn.fetch(
                """SELECT n.application_id, n.template, n.attempts,
                          extract(epoch FROM n.scheduled_at) * 1000 AS scheduled_ms,
                          extract(epoch FROM n.sent_at) * 1000 AS sent_ms,
                          extract(epoch FROM d.stored_at) * 1000 AS decision_ms
                   FROM notify.notifications n LEFT JOIN notify.decisions d USING (application_id)
                   WHERE n.channel = 'email' AND n.template LIKE 'grant.%' AND n.status = 'sent'
                     AND n.application_id = ANY($1::text[])""",
                list(apps),
            )
        finally:
            await conn.close()
    committed = {**tracker.seen_at.get(Topic.GRANT_REFUSED, {}), **tracker.seen_at.get(Topic.GRANT_COMMITTED, {})}
    decided = tracker.seen_at.get(Topic.ELIGIBILITY_DECIDED, {})
    consume: list[float] = []
    dispatch: list[float] = []
    relay: list[float] = []
    hop: list[float] = []
    late: list[float] = []
    wait_decision: list[float] = []
    late_dispatch: list[float] = []
    for r in rows:
        app = r["application_id"]
        at, done = committed.get(app), tracker.done_at.get(app)
        if at is None or done is None:
            continue
        scheduled, sent_ms = float(r["scheduled_ms"]), float(r["sent_ms"])
        consume.append(scheduled - at)
        dispatch.append(sent_ms - scheduled)
        relay.append(done - sent_ms)
        hop.append(done - at)
        if r["decision_ms"] is not None and float(r["decision_ms"]) > scheduled:
            late_dispatch.append(sent_ms - scheduled)
            late.append(done - at)
            wait_decision.append(float(r["decision_ms"]) - scheduled)
    decided_to_stored = [
        float(r["decision_ms"]) - decided[r["application_id"]]
        for r in rows
        if r["decision_ms"] is not None and r["application_id"] in decided
    ]
    print(f"\nlast hop of {len(hop)} grant e-mails at {args.rate}/s (tuning {tuning})")
    if args.webhooks:
        print(f"  webhooks received by the agency: {stack.webhook_stats}")
    print(quantiles("committed/refused -> e-mail sent (the hop)", hop))
    print(quantiles("  committed -> scheduled (notify consumes)", consume))
    print(quantiles("  scheduled -> sent (dispatcher)", dispatch))
    print(quantiles("  sent -> NotificationSent (notify relay)", relay))
    print(quantiles("decided record -> notify stored the decision", decided_to_stored))
    print(f"  e-mails scheduled before their decision was stored: {len(late)} of {len(hop)}")
    print(quantiles("    their hop", late))
    print(quantiles("    scheduled -> decision stored", wait_decision))
    print(quantiles("    scheduled -> sent", late_dispatch))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--applications", type=int, default=600)
    parser.add_argument("--rate", type=float, default=30)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--webhooks", action="store_true", help="An agency subscribed by webhook (bench/webhook_sink.py).")
    parser.add_argument("--logs", type=Path, default=None, help="Keep the services' logs in this folder.")
    args = parser.parse_args()
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    server = os.environ.get("DATABASE_URL")
    if not bootstrap or not server:
        sys.exit("KAFKA_BOOTSTRAP_SERVERS and DATABASE_URL must be set (deploy/local/stack.py -- ...)")
    if args.logs is not None:
        run_stoppable(probe(args, bootstrap, server, args.logs))
        return 0
    with tempfile.TemporaryDirectory(prefix="cg-probe-") as tmp:
        run_stoppable(probe(args, bootstrap, server, Path(tmp)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
