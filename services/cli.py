"""`clustergrants`: the operator's command line across the services.

    clustergrants submit FILE...              submit applications (HTTP intake, or --kafka)
    clustergrants history APPLICATION_ID      what every service did with one application, with amounts
    clustergrants dead-letters list|redrive   the Kafka dead-letter topic
    clustergrants calls close-call|what-if|re-decide|open-call|evaluate
                                              eligibility: calls, what-ifs, re-decisions, evaluations
    clustergrants review list|record|history  case handling: referred applications, findings, revisions
    clustergrants budget ...                  pots and balances, reconcile, open a year, release
    clustergrants notify dead-letters ...     parked e-mails and webhooks
    clustergrants export ...                  open data (360Giving, EU list of operations)
    clustergrants audit                       who changed what, when (every service's audit trail)
    clustergrants migrate [--status]          apply the SQL migrations, or show applied/pending/changed

Settings: the services' environment variables; those unset come from `<state dir>/stack.env`
(services/cli_common.py). Every error is one line on stderr with exit code 2, never a traceback;
`--json` output is one JSON document on stdout and nothing else goes there (logs go to stderr).
Commands that change money or state show what they will do (`--dry-run`), ask on a terminal
(`--yes` for scripts) and write an audit record in the same transaction as their effect.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
import time
from collections.abc import Sequence
from contextlib import suppress
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import asyncpg
import httpx
import typer
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from services.budget import cli as budget_cli
from services.cli_common import (
    CliError,
    DryRunOption,
    JsonOption,
    YesOption,
    confirm,
    database,
    database_where,
    emit_json,
    kafka_options,
    money,
    operator_identity,
    refuse_unconfirmed,
    run,
    run_app,
    settings,
    start_kafka,
    to_json,
)
from services.eligibility import cli as eligibility_cli
from services.eligibility import review_cli
from services.notify import cli as notify_cli
from services.opendata import cli as opendata_cli
from shared import audit
from shared import migrate as migrations
from shared.cloudevents import portal_headers
from shared.db import Connection
from shared.delivery import UnitOfWork
from shared.events import ApplicationSubmitted
from shared.settings import CommonSettings, database_ssl
from shared.topics import Topic, service_source, topic_name

app = typer.Typer(help="Operate clustergrants.", no_args_is_help=True, pretty_exceptions_enable=False)
app.add_typer(eligibility_cli.app, name="calls")
app.add_typer(review_cli.app, name="review")
app.add_typer(budget_cli.app, name="budget")
app.add_typer(notify_cli.app, name="notify")
app.add_typer(opendata_cli.app, name="export")
dead_letters = typer.Typer(help="The Kafka dead-letter topic: list and redrive.", no_args_is_help=True)
app.add_typer(dead_letters, name="dead-letters")


class Service(StrEnum):
    intake = "intake"
    eligibility = "eligibility"
    budget = "budget"
    notify = "notify"


# --- submit ---------------------------------------------------------------------------------------------


def _default_intake_url() -> str:
    return os.environ.get("INTAKE_URL") or f"http://127.0.0.1:{os.environ.get('INTAKE_HTTP_PORT') or 28080}"


@app.command()
def submit(
    files: Annotated[
        list[Path], typer.Argument(exists=True, dir_okay=False, readable=True, help="Application JSON files, one each.")
    ],
    kafka: Annotated[bool, typer.Option("--kafka", help="Publish to the portals' submitted topic instead of HTTP.")] = False,
    url: Annotated[
        str | None,
        typer.Option(help="The HTTP intake. Default: INTAKE_URL, else http://127.0.0.1:<INTAKE_HTTP_PORT, 28080>."),
    ] = None,
    token: Annotated[
        str, typer.Option(envvar="INTAKE_TOKEN", help="Bearer token of the HTTP intake (INTAKE_TOKEN).")
    ] = "dev-token",  # noqa: S107
    source: Annotated[
        str,
        typer.Option(
            envvar="CLUSTERGRANTS_PORTAL_SOURCE",
            help="With --kafka: the CloudEvents source this portal publishes as (a URI-reference of its own).",
        ),
    ] = "urn:clustergrants:cli",
    as_json: JsonOption = False,
) -> None:
    """Submit application files; prints what intake answered for each. Exit 1 if any was not accepted."""
    intake_url = (url or _default_intake_url()).rstrip("/")
    config = settings(CommonSettings)
    show_progress = sys.stderr.isatty() and not as_json

    async def by_kafka(advance: Any) -> list[dict[str, Any]]:
        producer = AIOKafkaProducer(**kafka_options(config), enable_idempotence=True)
        await start_kafka(producer, config)
        results: list[dict[str, Any]] = []
        topic = topic_name(Topic.APPLICATION_SUBMITTED, config.topic_prefix)
        try:
            for path in files:
                raw = path.read_bytes()
                key = _application_id(raw)
                # The same file twice is the same event (its id is the content's hash): intake's inbox drops the copy.
                headers = portal_headers(
                    ApplicationSubmitted, source=source, event_id=hashlib.sha256(raw).hexdigest(), subject=key
                )
                await producer.send_and_wait(topic, raw, key=key.encode() if key else None, headers=headers)
                results.append({"file": str(path), "accepted": True, "status": None, "detail": f"published to {topic}"})
                advance()
        finally:
            with suppress(Exception):
                await asyncio.wait_for(producer.stop(), timeout=10)
        return results

    async def by_http(advance: Any) -> list[dict[str, Any]]:
        results: list[dict[str, Any]] = []
        async with httpx.AsyncClient(timeout=30) as client:
            for path in files:
                try:
                    response = await client.post(
                        f"{intake_url}/v1/applications",
                        content=path.read_bytes(),
                        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
                    )
                except httpx.HTTPError as error:
                    done = f" after {len(results)} of {len(files)} file(s)" if results else ""
                    raise CliError(
                        f"cannot reach the intake at {intake_url} ({type(error).__name__}){done}: check INTAKE_URL"
                    ) from None
                try:
                    body = response.json()
                except ValueError:
                    body = {}
                body = body if isinstance(body, dict) else {}
                detail = str(body.get("status", ""))
                if response.status_code >= 400:
                    errors = body.get("errors") or [{"loc": [], "type": body.get("detail", response.text[:80])}]
                    detail = "; ".join(f"{'.'.join(map(str, e.get('loc', []))) or '(body)'}: {e.get('type')}" for e in errors[:5])
                results.append(
                    {"file": str(path), "accepted": response.status_code < 300, "status": response.status_code, "detail": detail}
                )
                advance()
        return results

    async def go() -> list[dict[str, Any]]:
        work = by_kafka if kafka else by_http
        if not show_progress:
            return await work(lambda: None)
        with Progress(console=Console(stderr=True), transient=True) as progress:
            task = progress.add_task("submitting", total=len(files))
            return await work(lambda: progress.advance(task))

    results = run(go())
    if as_json:
        emit_json(results)
    else:
        table = Table("file", "result")
        for r in results:
            table.add_row(Path(r["file"]).name, f"{r['status']} {r['detail']}" if r["status"] is not None else r["detail"])
        Console().print(table)
    if not all(r["accepted"] for r in results):
        raise typer.Exit(1)


def _application_id(raw: bytes) -> str | None:
    try:
        value = json.loads(raw).get("application_id")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


# --- history --------------------------------------------------------------------------------------------


def _schedule(grant: dict[str, Any]) -> tuple[int, str, str]:
    """(total minor units, currency, 'year: amount, ...') of a ProposedGrant as JSON."""
    currency = grant["currency"]
    years = [(s["budget_year"], s["amount"]["amount_minor"]) for s in grant.get("schedule", [])]
    total = sum(a for _, a in years)
    return total, currency, ", ".join(f"{y}: {money(a, currency)}" for y, a in years)


async def _rows(conn: Connection, query: str, *args: Any) -> list[asyncpg.Record]:
    try:
        return list(await conn.fetch(query, *args))
    except (asyncpg.UndefinedTableError, asyncpg.UndefinedColumnError, asyncpg.InvalidSchemaNameError):
        return []  # that service's schema is not migrated in this database


async def _history(conn: Connection, application_id: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    def add(at: datetime, service: str, what: str, minor: int | None = None, currency: str | None = None) -> None:
        value = {"amount_minor": minor, "currency": currency} if minor is not None and currency else None
        out.append({"at": at, "service": service, "what": what, "amount": value})

    for r in await _rows(conn, "SELECT received_at, channel FROM intake.applications WHERE application_id = $1", application_id):
        add(r["received_at"], "intake", f"received via {r['channel']}")
    for r in await _rows(
        conn,
        "SELECT rejected_at, reason, jsonb_array_length(errors) AS n FROM intake.rejections WHERE application_id = $1",
        application_id,
    ):
        add(r["rejected_at"], "intake", f"rejected ({r['reason']}, {r['n']} error(s))")
    for r in await _rows(
        conn,
        "SELECT decided_at, outcome, parameter_version, decision->'proposed_grant' AS grant "
        "FROM eligibility.decisions WHERE application_id = $1",
        application_id,
    ):
        what = f"decided {r['outcome']} with {r['parameter_version']}"
        if r["grant"]:
            total, currency, years = _schedule(r["grant"])
            add(r["decided_at"], "eligibility", f"{what}, proposing {money(total, currency)} ({years})", total, currency)
        else:
            add(r["decided_at"], "eligibility", what)
    for r in await _rows(
        conn, "SELECT submitted_at, assessor_id FROM eligibility.assessments WHERE application_id = $1", application_id
    ):
        add(r["submitted_at"], "eligibility", f"assessed by {r['assessor_id']}")
    for r in await _rows(
        conn,
        "SELECT committed_at, programme, instrument, grant_json, status FROM budget.grants WHERE application_id = $1",
        application_id,
    ):
        total, currency, years = _schedule(r["grant_json"])
        add(
            r["committed_at"],
            "budget",
            f"committed {r['programme']} {money(total, currency)} as {r['instrument']} ({years}); now {r['status']}",
            total,
            currency,
        )
    for r in await _rows(
        conn,
        "SELECT refused_at, limit_id, message_key, budget_year, available, requested, unit FROM budget.refusals "
        "WHERE application_id = $1",
        application_id,
    ):
        figures = ""
        if r["requested"] is not None and r["unit"]:
            figures = f": asked {money(r['requested'], r['unit'])}, left {money(r['available'], r['unit'])}"
        year = f" in {r['budget_year']}" if r["budget_year"] is not None else ""
        add(r["refused_at"], "budget", f"refused by {r['limit_id']}{year} ({r['message_key']}){figures}")
    for r in await _rows(
        conn,
        """SELECT e.created_at, e.reason, e.unit, sum(e.amount_minor)::bigint AS amount
           FROM budget.entries e JOIN budget.grants g USING (grant_id)
           WHERE g.application_id = $1 AND e.kind = 'release' AND e.unit <> 'count'
           GROUP BY e.created_at, e.reason, e.unit""",
        application_id,
    ):
        add(r["created_at"], "budget", f"released {money(r['amount'], r['unit'])} ({r['reason']})", r["amount"], r["unit"])
    for r in await _rows(
        conn,
        "SELECT coalesce(sent_at, scheduled_at) AS at, channel, template, status FROM notify.notifications "
        "WHERE application_id = $1",
        application_id,
    ):
        add(r["at"], "notify", f"{r['channel']} {r['template']}: {r['status']}")
    for service in audit.SERVICES:
        for r in await _rows(
            conn,
            f"SELECT recorded_at, operator, command, outcome FROM {service}.audit WHERE arguments->>'application_id' = $1",
            application_id,
        ):
            add(r["recorded_at"], service, f"operator {r['operator']}: {r['command']} ({r['outcome']})")
    return sorted(out, key=lambda row: row["at"])


@app.command()
def history(
    application_id: Annotated[str, typer.Argument(help="The application id the portal gave.")], as_json: JsonOption = False
) -> None:
    """Everything the services recorded about one application, in time order, with its amounts."""
    config = settings(CommonSettings)

    async def read() -> list[dict[str, Any]]:
        async with database(config) as conn:
            return await _history(conn, application_id)

    rows = run(read())
    if not rows:
        raise CliError(f"no service knows application {application_id!r}")
    if as_json:
        emit_json(to_json(rows))
        return
    table = Table("when (UTC)", "service", "what", title=f"application {application_id}")
    for row in rows:
        table.add_row(row["at"].astimezone(UTC).isoformat(timespec="seconds"), row["service"], row["what"])
    Console().print(table)


# --- the Kafka dead-letter topic ---------------------------------------------------------------------------


async def _read_dead_letters(config: CommonSettings, limit: int, timeout_s: float = 60) -> list[Any]:
    topic = topic_name(Topic.DEAD_LETTER, config.topic_prefix)
    options = kafka_options(config)
    probe = AIOKafkaProducer(**options)
    await start_kafka(probe, config)
    try:
        numbers = await asyncio.wait_for(probe.partitions_for(topic), timeout=15)  # waits for the topic's metadata
    except Exception as error:
        raise CliError(f"cannot read topic {topic} at {config.kafka_bootstrap_servers} ({type(error).__name__})") from None
    finally:
        with suppress(Exception):
            await asyncio.wait_for(probe.stop(), timeout=10)
    consumer = AIOKafkaConsumer(**options, enable_auto_commit=False)
    await start_kafka(consumer, config)
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(numbers)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        records: list[Any] = []
        deadline = time.monotonic() + timeout_s

        async def behind() -> bool:
            return any([await consumer.position(tp) < ends[tp] for tp in partitions])

        while len(records) < limit and await behind():
            if time.monotonic() > deadline:
                raise CliError(f"reading {topic} took longer than {timeout_s:.0f} s: try again, or a smaller --limit")
            batch = await consumer.getmany(timeout_ms=1000, max_records=500)
            for tp_records in batch.values():
                records += tp_records
        return records[:limit]
    finally:
        with suppress(Exception):
            await asyncio.wait_for(consumer.stop(), timeout=10)


def _dlt_headers(record: Any) -> dict[str, str]:
    return {k: v.decode(errors="replace") for k, v in record.headers}


def _dead_letter(record: Any) -> dict[str, Any]:
    h = _dlt_headers(record)
    return {
        "id": f"{record.partition}:{record.offset}",
        "topic": h.get("cg_dlt_topic"),
        "partition": h.get("cg_dlt_partition"),
        "offset": h.get("cg_dlt_offset"),
        "group": h.get("cg_dlt_group"),
        "attempts": h.get("cg_dlt_attempts"),
        "error_type": h.get("cg_dlt_error_type"),
        "error": h.get("cg_dlt_error"),
        "parked_at": h.get("cg_dlt_parked_at"),
    }


@dead_letters.command("list")
def list_dead_letters(
    limit: Annotated[int, typer.Option(min=1, max=1_000_000, help="At most this many, oldest first.")] = 200,
    as_json: JsonOption = False,
) -> None:
    """Every parked record: where it came from, which consumer gave up and why."""
    config = settings(CommonSettings)
    records = [_dead_letter(r) for r in run(_read_dead_letters(config, limit))]
    if as_json:
        emit_json(records)
        return
    table = Table("id", "from", "group", "attempts", "error", "parked at", title="dead letters")
    for d in records:
        table.add_row(
            d["id"],
            f"{d['topic']}@{d['partition']}:{d['offset']}",
            d["group"] or "?",
            d["attempts"] or "?",
            (d["error"] or "?")[:80],
            d["parked_at"] or "?",
        )
    Console().print(table)
    typer.echo(f"{len(records)} dead letter(s)")


def parking_service(group: str | None) -> str | None:
    """The service whose consumer group parked a record (its schema holds the redrive's audit row)."""
    service = (group or "").removeprefix("clustergrants.")
    return service if service in audit.SERVICES else None


def redrive_changes(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The audit `changes` of a redrive: which parked records went back, from where. (The lead's
    service-side redrive can record the same shape in the service's own transaction.)"""
    keep = ("id", "topic", "partition", "offset", "group", "error_type")
    return {"records": [{k: d[k] for k in keep} for d in records]}


@dead_letters.command("redrive")
def redrive(
    ids: Annotated[list[str], typer.Argument(help="partition:offset of each dead letter (from `list`).")],
    dry_run: DryRunOption = False,
    yes: YesOption = False,
    wait_s: Annotated[
        float, typer.Option("--wait", min=0, help="Seconds to wait for the services' outcomes (0: do not wait).")
    ] = 30.0,
    as_json: JsonOption = False,
) -> None:
    """Have the service that parked each record process it again, as if it had just been consumed.

    Nothing is republished (the operator may write no topic, shared/acl.py): each request goes into
    the parking service's own schema, in the same transaction as its audit record, and that service
    re-reads the parked copy from the dead-letter topic and runs it through its contract and handler.
    A record that still fails is parked again; one that was in fact processed changes nothing."""
    wanted = list(dict.fromkeys(ids))
    for item in wanted:
        partition, _, offset = item.partition(":")
        if not (partition.isdigit() and offset.isdigit()):
            raise CliError(f"{item!r} is not partition:offset (see `clustergrants dead-letters list`)")
    config = settings(CommonSettings)
    operator = None if dry_run else operator_identity()
    if not dry_run:
        refuse_unconfirmed("dead-letters redrive", yes)

    async def find() -> list[Any]:
        records = [r for r in await _read_dead_letters(config, 1_000_000) if f"{r.partition}:{r.offset}" in wanted]
        missing = set(wanted) - {f"{r.partition}:{r.offset}" for r in records}
        if missing:
            raise CliError(f"no dead letter {', '.join(sorted(missing))}")
        for r in records:
            d = _dead_letter(r)
            if parking_service(d["group"]) is None or not d["topic"]:
                raise CliError(f"dead letter {d['id']} names no known service and topic (group {d['group']!r}): not redriven")
            if _dlt_headers(r).get("cg_dlt_truncated") == "true":
                raise CliError(f"dead letter {d['id']} is a truncated copy (the record was too large): it cannot be redriven")
        return records

    records = run(find())
    described = [_dead_letter(r) for r in records]
    summary = f"{len(records)} record(s) to be processed again by " + ", ".join(
        sorted({str(parking_service(d["group"])) for d in described})
    )
    if dry_run:
        if as_json:
            emit_json(
                {"command": "dead-letters redrive", "dry_run": True, "changes": redrive_changes(described), "audit_ids": []}
            )
        else:
            typer.echo(f"dry run, nothing changed. It would be: {summary}")
        return
    if not yes:
        confirm("dead-letters redrive", summary)
    assert operator is not None

    async def request() -> tuple[list[str], dict[str, str]]:
        audit_ids: list[str] = []
        async with database(config) as conn:
            for service in sorted({str(parking_service(d["group"])) for d in described}):
                mine = [r for r in records if parking_service(_dead_letter(r)["group"]) == service]
                async with conn.transaction():  # the requests and their audit record, together
                    uow = UnitOfWork(conn=conn, schema=service, source=service_source(service))
                    for r in mine:
                        await conn.execute(
                            f"""INSERT INTO {service}.redrive_requests (dlt_partition, dlt_offset, requested_by)
                                VALUES ($1, $2, $3)
                                ON CONFLICT (dlt_partition, dlt_offset) DO UPDATE
                                SET requested_by = EXCLUDED.requested_by, requested_at = now(), done_at = NULL,
                                    outcome = NULL""",
                            r.partition,
                            r.offset,
                            operator,
                        )
                    audit_ids.append(
                        str(
                            await audit.record(
                                uow,
                                operator=operator,
                                command="dead-letters redrive",
                                arguments={"ids": [f"{r.partition}:{r.offset}" for r in mine]},
                                outcome="requested",
                                changes=redrive_changes([_dead_letter(r) for r in mine]),
                            )
                        )
                    )
            outcomes = await _wait_for_redrives(conn, described, wait_s)
        return audit_ids, outcomes

    audit_ids, outcomes = run(request())
    if as_json:
        emit_json(
            {
                "command": "dead-letters redrive",
                "dry_run": False,
                "changes": redrive_changes(described),
                "audit_ids": audit_ids,
                "outcomes": outcomes,
            }
        )
    else:
        typer.echo(f"redrive requested: {len(records)} record(s) (audit record(s) {', '.join(audit_ids)})")
        for d in described:
            typer.echo(f"  {d['id']}: {outcomes.get(str(d['id']), 'pending (the service has not taken it yet)')}")


async def _wait_for_redrives(conn: Connection, described: Sequence[dict[str, Any]], wait_s: float) -> dict[str, str]:
    """The outcome of each redrive as the parking service recorded it, waiting up to `wait_s`."""
    deadline = time.monotonic() + wait_s
    outcomes: dict[str, str] = {}
    while True:
        for d in described:
            service = parking_service(d["group"])
            partition, offset = (int(x) for x in str(d["id"]).split(":"))
            outcome = await conn.fetchval(
                f"""SELECT outcome FROM {service}.redrive_requests
                    WHERE dlt_partition = $1 AND dlt_offset = $2 AND done_at IS NOT NULL""",
                partition,
                offset,
            )
            if outcome is not None:
                outcomes[str(d["id"])] = outcome
        if len(outcomes) == len(described) or time.monotonic() >= deadline:
            return outcomes
        await asyncio.sleep(0.2)


# --- the audit trail -------------------------------------------------------------------------------------


def _since(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise CliError(
            f"--since {value!r}: expected an ISO date or date-time, e.g. 2024-03-01 or 2024-03-01T09:00+01:00"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@app.command("audit")
def audit_command(
    service: Annotated[list[Service] | None, typer.Option(help="Only this service's trail (repeatable).")] = None,
    operator: Annotated[str | None, typer.Option(help="Only commands run by this operator.")] = None,
    command: Annotated[str | None, typer.Option(help="Only this command, e.g. 'budget open-year'.")] = None,
    since: Annotated[str | None, typer.Option(help="Only records from then on (ISO date or date-time; UTC if no zone).")] = None,
    limit: Annotated[int, typer.Option(min=1, max=100_000, help="At most this many, newest first.")] = 100,
    as_json: JsonOption = False,
) -> None:
    """Who changed what, when: the audit records of every service, newest first."""
    config = settings(CommonSettings)
    services = [s.value for s in service] if service else list(audit.SERVICES)
    start = _since(since)

    async def read() -> list[dict[str, Any]]:
        async with database(config) as conn:
            try:
                return await audit.records(conn, services, operator=operator, command=command, since=start, limit=limit)
            except audit.AuditNotMigrated as error:
                raise CliError(str(error)) from None

    rows = run(read())
    if as_json:
        emit_json(to_json(rows))
        return
    if not rows:
        typer.echo("no audit records")
        return
    table = Table("when (UTC)", "service", "operator", "command", "arguments", "outcome", title="audit trail")
    for r in rows:
        arguments = ", ".join(f"{k}={v}" for k, v in r["arguments"].items() if v not in (None, False, [], {}))
        table.add_row(
            r["recorded_at"].astimezone(UTC).isoformat(timespec="seconds"),
            r["service"],
            r["operator"],
            r["command"],
            arguments,
            r["outcome"],
        )
    Console().print(table)


# --- migrations ------------------------------------------------------------------------------------------


@app.command("migrate")
def migrate_command(
    service: Annotated[list[Service] | None, typer.Argument(help="Only these services (default: all).")] = None,
    status: Annotated[
        bool, typer.Option("--status", help="Only show each file: applied, pending, changed; apply nothing.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Apply the pending SQL migrations (refused when an applied file changed), or show their status."""
    config = settings(CommonSettings)
    services = tuple(s.value for s in service) if service else migrations.SERVICES
    dsn = config.database_url.get_secret_value()
    where = database_where(dsn)

    async def guarded(coroutine: Any) -> Any:
        try:
            return await coroutine
        except migrations.MigrationError as error:
            raise CliError(str(error)) from None
        except asyncpg.PostgresError as error:
            raise CliError(f"PostgreSQL at {where}: {type(error).__name__}: {error}") from None
        except (OSError, TimeoutError, asyncpg.InterfaceError) as error:
            raise CliError(f"cannot reach PostgreSQL at {where} ({type(error).__name__}): check DATABASE_URL") from None

    if not status:
        applied = run(guarded(migrations.migrate(dsn, services, database_ssl(config))))
        if as_json:
            emit_json({"applied": applied})
        else:
            typer.echo(f"migrations applied: {', '.join(applied) if applied else 'none (up to date)'}")
        return
    found: list[migrations.FileStatus] = run(guarded(migrations.status(dsn, services, database_ssl(config))))
    problems = [f for f in found if f.state in ("changed", "missing")]
    if as_json:
        emit_json([f.as_json() for f in found])
    else:
        table = Table("service", "version", "state", "applied at (UTC)", "file", title=f"migrations at {where}")
        for f in found:
            table.add_row(
                f.service,
                f.version,
                f.state,
                f.applied_at.astimezone(UTC).isoformat(timespec="seconds") if f.applied_at else "",
                f.file or "(gone)",
            )
        Console().print(table)
        for problem in problems:
            typer.echo(f"problem: {problem.problem()}", err=True)
    if problems:
        raise typer.Exit(1)


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("COLUMNS", "160")
    run_app(app, argv)


if __name__ == "__main__":
    main()
