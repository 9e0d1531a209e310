"""`clustergrants`: the operator's command line across the services.

    clustergrants submit FILE...            submit applications (HTTP intake, or --kafka)
    clustergrants history APPLICATION_ID    what every service did with one application
    clustergrants dead-letters list|redrive the Kafka dead-letter topic
    clustergrants calls close|what-if       eligibility (competitive calls, rule-set what-ifs)
    clustergrants budget ...                pots and balances, reconcile, open a year, release
    clustergrants notify ...                webhook dead letters
    clustergrants export ...                open data (360Giving, EU list of operations)

Settings come from the same environment variables as the services (README: Settings). Bad
arguments get a one-line error and exit code 2, never a traceback.
"""

from __future__ import annotations

import asyncio
import json
import os
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
from services.budget import opendata_cli
from services.eligibility import cli as eligibility_cli
from services.notify import cli as notify_cli
from shared.kafka_security import client_options
from shared.settings import CommonSettings, database_ssl
from shared.topics import Topic, topic_name

app = typer.Typer(help="Operate clustergrants.", no_args_is_help=True, pretty_exceptions_enable=False)
app.add_typer(eligibility_cli.app, name="calls")
app.add_typer(budget_cli.app, name="budget")
app.add_typer(opendata_cli.app, name="export")
dead_letters = typer.Typer(help="The Kafka dead-letter topic: list and redrive.", no_args_is_help=True)
app.add_typer(dead_letters, name="dead-letters")
console = Console()


def fail(message: str) -> typer.Exit:
    console.print(f"[red]error:[/red] {message}")
    return typer.Exit(2)


async def _connect(settings: CommonSettings) -> asyncpg.Connection:
    try:
        return await asyncpg.connect(settings.database_url.get_secret_value(), timeout=10, ssl=database_ssl(settings))
    except (OSError, asyncpg.PostgresError) as error:
        raise fail(f"cannot reach PostgreSQL ({type(error).__name__}): check DATABASE_URL") from None


@app.command()
def submit(
    files: Annotated[list[Path], typer.Argument(exists=True, dir_okay=False, help="Application JSON files.")],
    kafka: Annotated[bool, typer.Option("--kafka", help="Publish to the submitted topic instead of HTTP.")] = False,
    url: Annotated[str, typer.Option(envvar="INTAKE_URL")] = "http://127.0.0.1:38080",
    token: Annotated[str, typer.Option(envvar="INTAKE_TOKEN", help="Bearer token of the HTTP intake.")] = "dev-token",  # noqa: S107
) -> None:
    """Submit application files, one application per file; prints what intake answered."""
    settings = CommonSettings()

    async def run() -> list[tuple[str, str]]:
        results: list[tuple[str, str]] = []
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("submitting", total=len(files))
            if kafka:
                producer = AIOKafkaProducer(**client_options(settings), enable_idempotence=True)
                try:
                    await producer.start()
                except Exception as error:
                    raise fail(f"cannot reach Kafka at {settings.kafka_bootstrap_servers}: {error}") from None
                try:
                    for path in files:
                        raw = path.read_bytes()
                        key = _application_id(raw)
                        await producer.send_and_wait(
                            topic_name(Topic.APPLICATION_SUBMITTED, settings.topic_prefix), raw, key=key.encode() if key else None
                        )
                        results.append((path.name, "published"))
                        progress.advance(task)
                finally:
                    await producer.stop()
                return results
            async with httpx.AsyncClient(timeout=30) as client:
                for path in files:
                    try:
                        response = await client.post(
                            f"{url}/v1/applications",
                            content=path.read_bytes(),
                            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
                        )
                    except httpx.HTTPError as error:
                        raise fail(f"cannot reach the intake at {url}: {type(error).__name__}") from None
                    body = response.json() if response.headers.get("content-type", "").startswith("application/json") else {}
                    detail = body.get("status", "")
                    if response.status_code >= 400:
                        errors = body.get("errors") or [{"loc": [], "type": body.get("detail", response.text[:80])}]
                        detail = "; ".join(
                            f"{'.'.join(map(str, e.get('loc', []))) or '(body)'}: {e.get('type')}" for e in errors[:5]
                        )
                    results.append((path.name, f"{response.status_code} {detail}"))
                    progress.advance(task)
        return results

    table = Table("file", "result")
    for row in asyncio.run(run()):
        table.add_row(*row)
    console.print(table)


def _application_id(raw: bytes) -> str | None:
    try:
        value = json.loads(raw).get("application_id")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


HISTORY_QUERIES: list[tuple[str, str]] = [
    ("intake", "SELECT received_at AS at, 'received via ' || channel AS what FROM intake.applications WHERE application_id = $1"),
    (
        "intake",
        "SELECT rejected_at AS at, 'rejected (' || reason || ')' AS what FROM intake.rejections WHERE application_id = $1",
    ),
    (
        "eligibility",
        "SELECT decided_at AS at, 'decided ' || outcome || ' with ' || parameter_version AS what "
        "FROM eligibility.decisions WHERE application_id = $1",
    ),
    (
        "eligibility",
        "SELECT submitted_at AS at, 'assessed by ' || assessor_id AS what FROM eligibility.assessments WHERE application_id = $1",
    ),
    (
        "budget",
        "SELECT committed_at AS at, 'committed ' || programme || ' ' || currency AS what FROM budget.grants "
        "WHERE application_id = $1",
    ),
    (
        "budget",
        "SELECT refused_at AS at, 'refused by ' || limit_id || ' (' || message_key || ')' AS what "
        "FROM budget.refusals WHERE application_id = $1",
    ),
    (
        "notify",
        "SELECT coalesce(sent_at, scheduled_at) AS at, channel || ' ' || template || ': ' || status AS what "
        "FROM notify.notifications WHERE application_id = $1",
    ),
]


@app.command()
def history(application_id: str) -> None:
    """Everything the services recorded about one application, in time order."""
    settings = CommonSettings()

    async def run() -> list[tuple[Any, str, str]]:
        conn = await _connect(settings)
        rows: list[tuple[Any, str, str]] = []
        try:
            for service, query in HISTORY_QUERIES:
                try:
                    found = await conn.fetch(query, application_id)
                except asyncpg.UndefinedTableError:
                    continue  # that service's schema is not migrated in this database
                except asyncpg.UndefinedColumnError:
                    continue
                rows += [(r["at"], service, r["what"]) for r in found]
        finally:
            await conn.close()
        return sorted(rows, key=lambda r: r[0])

    rows = asyncio.run(run())
    if not rows:
        raise fail(f"no service knows application {application_id!r}")
    table = Table("when (UTC)", "service", "what", title=f"application {application_id}")
    for at, service, what in rows:
        table.add_row(at.isoformat(timespec="seconds"), service, what)
    console.print(table)


async def _read_dead_letters(settings: CommonSettings, limit: int) -> list[Any]:
    topic = topic_name(Topic.DEAD_LETTER, settings.topic_prefix)
    consumer = AIOKafkaConsumer(**client_options(settings), enable_auto_commit=False)
    probe = AIOKafkaProducer(**client_options(settings))
    try:
        await consumer.start()
        await probe.start()
        numbers = await asyncio.wait_for(probe.partitions_for(topic), timeout=10)  # waits for the topic's metadata
    except Exception as error:
        raise fail(f"cannot read topic {topic} at {settings.kafka_bootstrap_servers}: {type(error).__name__}") from None
    finally:
        await probe.stop()
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(numbers)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        records: list[Any] = []

        async def behind() -> bool:
            return any([await consumer.position(tp) < ends[tp] for tp in partitions])

        while await behind() and len(records) < limit:
            batch = await consumer.getmany(timeout_ms=1000, max_records=500)
            for tp_records in batch.values():
                records += tp_records
        return records[:limit]
    finally:
        await consumer.stop()


def _dlt_headers(record: Any) -> dict[str, str]:
    return {k: v.decode(errors="replace") for k, v in record.headers}


@dead_letters.command("list")
def list_dead_letters(limit: Annotated[int, typer.Option(min=1)] = 200) -> None:
    """Every parked record: where it came from, which consumer gave up and why."""
    settings = CommonSettings()
    records = asyncio.run(_read_dead_letters(settings, limit))
    table = Table("id", "from", "group", "attempts", "error", "parked at", title="dead letters")
    for record in records:
        h = _dlt_headers(record)
        table.add_row(
            f"{record.partition}:{record.offset}",
            f"{h.get('cg_dlt_topic')}@{h.get('cg_dlt_partition')}:{h.get('cg_dlt_offset')}",
            h.get("cg_dlt_group", "?"),
            h.get("cg_dlt_attempts", "?"),
            h.get("cg_dlt_error", "?")[:80],
            h.get("cg_dlt_parked_at", "?"),
        )
    console.print(table)
    console.print(f"{len(records)} dead letter(s)")


@dead_letters.command("redrive")
def redrive(ids: Annotated[list[str], typer.Argument(help="partition:offset of each dead letter (from `list`).")]) -> None:
    """Publish parked records again to the topic they came from, with their original key and headers.

    Consumers' inboxes make this safe: a record that was in fact processed changes nothing again.
    """
    settings = CommonSettings()
    wanted = set(ids)
    for item in wanted:
        partition, _, offset = item.partition(":")
        if not (partition.isdigit() and offset.isdigit()):
            raise fail(f"{item!r} is not partition:offset (see `clustergrants dead-letters list`)")

    async def run() -> int:
        records = [r for r in await _read_dead_letters(settings, 1_000_000) if f"{r.partition}:{r.offset}" in wanted]
        missing = wanted - {f"{r.partition}:{r.offset}" for r in records}
        if missing:
            raise fail(f"no dead letter {', '.join(sorted(missing))}")
        producer = AIOKafkaProducer(**client_options(settings), enable_idempotence=True)
        await producer.start()
        try:
            for record in records:
                headers = [(k, v) for k, v in record.headers if not k.startswith("cg_dlt_")]
                await producer.send_and_wait(_dlt_headers(record)["cg_dlt_topic"], record.value, key=record.key, headers=headers)
        finally:
            await producer.stop()
        return len(records)

    console.print(f"redriven: {asyncio.run(run())} record(s)")


@app.command(
    "notify",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []},
    add_help_option=False,
)
def notify(ctx: typer.Context) -> None:
    """Notify's parked e-mails and webhooks: `notify dead-letters list|redeliver ...` (`notify --help`)."""
    raise typer.Exit(notify_cli.main(list(ctx.args)))


def main() -> None:
    os.environ.setdefault("COLUMNS", "160")
    app()


if __name__ == "__main__":
    main()
