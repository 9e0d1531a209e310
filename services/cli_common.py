"""What every `clustergrants` command shares: where its connection settings come from, one-line
errors on stderr with exit code 2, output (tables for people, `--json` for `jq`), amounts, and the
safe, audited way to change state.

Connection settings are the services' environment variables. Those that are unset are read from
`<state dir>/stack.env` (state dir: CLUSTERGRANTS_STATE_DIR, else `.local` of the repository), the
`KEY=VALUE` file the local stack writes when it starts, so the CLI talks to the stack that runs.

A command that changes money or state goes through `change()`: it shows what it will do
(`--dry-run` stops there; the same work runs in a transaction that is rolled back), asks on a
terminal (`--yes` for scripts; without it, a stdin that is not a terminal is refused), then does it
with its audit record (shared/audit.py) in the same transaction. The transaction is
`shared.delivery.UnitOfWork` on the service's schema: the one seam to move when the runtime's
transaction changes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import sys
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar
from urllib.parse import urlsplit

import asyncpg
import typer
from pydantic import ValidationError
from pydantic_settings import BaseSettings

# Typer 0.29 ships its own copy of Click; these two have no public alias.
from typer._click.exceptions import NoArgsIsHelpError, UsageError

from shared import audit
from shared.db import Connection, _init_connection
from shared.delivery import UnitOfWork
from shared.kafka_security import client_options
from shared.money import MINOR_UNITS
from shared.settings import CommonSettings, database_ssl
from shared.topics import service_source

ROOT = Path(__file__).resolve().parents[1]
STACK_ENV = "stack.env"
PROG = "clustergrants"
T = TypeVar("T")
S = TypeVar("S", bound=BaseSettings)

# --- errors -----------------------------------------------------------------------------------------


class CliError(Exception):
    """Ends the command with one line on stderr and `code` (2: bad arguments, unreachable
    infrastructure, a refusal by the domain)."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def one_line(text: str, limit: int = 400) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _unexpected(error: BaseException) -> str:
    """A one-line description of an error no command caught itself."""
    if isinstance(error, asyncpg.UndefinedTableError | asyncpg.InvalidSchemaNameError | asyncpg.UndefinedColumnError):
        return f"the database is not migrated ({error}): run `{PROG} migrate`"
    if isinstance(error, asyncpg.PostgresConnectionError | asyncpg.InterfaceError | ConnectionError):
        return f"lost the connection to PostgreSQL ({type(error).__name__}): try again"
    if isinstance(error, asyncpg.PostgresError):
        return f"PostgreSQL refused: {type(error).__name__}: {error}"
    module = type(error).__module__
    if module.startswith(("aiokafka", "kafka")):
        return f"Kafka failed ({type(error).__name__}): {error}"
    return f"unexpected {type(error).__name__}: {error}"


def run_app(app: typer.Typer, argv: list[str] | None = None) -> NoReturn:
    """Run the CLI: every error one line on stderr (exit 2), never a traceback; logs on stderr."""
    code = 0
    try:
        load_stack_env()
        _quiet_logging()
        command = typer.main.get_command(app)
        result = command.main(args=argv, prog_name=PROG, standalone_mode=False)
        code = result if isinstance(result, int) else 0
    except NoArgsIsHelpError as error:  # a group without its command: its help (Rich prints it itself)
        if error.format_message().strip():
            typer.echo(error.format_message(), err=True)
        code = 2
    except typer.TyperException as error:  # bad arguments and options (Typer's Click exceptions)
        where = error.ctx.command_path if isinstance(error, UsageError) and error.ctx else PROG
        typer.echo(f"error: {where}: {one_line(error.format_message())}", err=True)
        code = 2
    except typer.Abort:
        typer.echo("aborted: nothing changed", err=True)
        code = 1
    except CliError as error:
        typer.echo(f"error: {one_line(error.message)}", err=True)
        code = error.code
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        code = 130
    except Exception as error:
        typer.echo(f"error: {one_line(_unexpected(error))}", err=True)
        code = 2
    with suppress(Exception):
        sys.stdout.flush()
    sys.exit(code)


def _quiet_logging() -> None:
    """The services' structlog set-up, on stderr; only warnings. Libraries (aiokafka logs every
    failed connection attempt) stay silent: the command reports what failed, once."""
    from shared.logging import configure_logging

    configure_logging("cli", os.environ.get("LOG_FORMAT") or "auto", "WARNING")
    for noisy in ("aiokafka", "kafka", "asyncio", "faststream", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.CRITICAL + 1)


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


# --- settings ---------------------------------------------------------------------------------------

_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def state_dir(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    return Path(env.get("CLUSTERGRANTS_STATE_DIR") or ROOT / ".local")


def read_env_file(path: Path) -> dict[str, str]:
    """`KEY=VALUE` lines (blank lines and `#` comments allowed, values optionally quoted)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise CliError(f"cannot read {path}: {type(error).__name__}") from None
    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.removeprefix("export ").partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not _KEY.match(key):
            raise CliError(f"{path}:{number}: expected KEY=VALUE")  # never the line: it may hold a password
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key] = value
    return values


def load_stack_env(environ: dict[str, str] | os._Environ[str] | None = None) -> Path | None:
    """Fill in every variable that is unset from `<state dir>/stack.env`, if the file exists."""
    env = os.environ if environ is None else environ
    path = state_dir(env) / STACK_ENV
    if not path.is_file():
        return None
    for key, value in read_env_file(path).items():
        env.setdefault(key, value)
    return path


def settings(cls: type[S]) -> S:
    """The service's settings from the environment; a bad value is one line naming the variable."""
    try:
        return cls()
    except ValidationError as error:
        first = error.errors(include_input=False)[0]
        name = "_".join(str(part) for part in first["loc"]).upper() or "(settings)"
        raise CliError(f"setting {name}: {first['msg']}") from None


def _hint() -> str:
    path = state_dir() / STACK_ENV
    return f"check DATABASE_URL (or {path})" if not path.is_file() else f"check DATABASE_URL ({path} is read for unset variables)"


def database_where(dsn: str) -> str:
    """host:port/database of a DSN, never its user or password."""
    try:
        parts = urlsplit(dsn)
        host = parts.hostname or "localhost"
        return f"{host}:{parts.port or 5432}{parts.path or ''}"
    except ValueError:
        return "(unparsable DATABASE_URL)"


async def connect(config: CommonSettings) -> Connection:
    dsn = config.database_url.get_secret_value()
    where = database_where(dsn)
    try:
        ssl = database_ssl(config)
        options: dict[str, Any] = {"ssl": ssl} if ssl is not None else {}
        conn: Connection = await asyncpg.connect(dsn, timeout=10, **options)
    except asyncpg.PostgresError as error:
        raise CliError(f"PostgreSQL at {where} refused the connection: {type(error).__name__}: {error}") from None
    except Exception as error:
        raise CliError(f"cannot reach PostgreSQL at {where} ({type(error).__name__}): {_hint()}") from None
    await _init_connection(conn)
    return conn


@asynccontextmanager
async def database(config: CommonSettings) -> Any:
    conn = await connect(config)
    try:
        yield conn
    finally:
        with suppress(Exception):
            await asyncio.wait_for(conn.close(), timeout=5)


async def start_kafka(client: Any, config: CommonSettings, timeout_s: float = 20) -> None:
    """Start an aiokafka client, or one line naming the broker it could not reach."""
    try:
        await asyncio.wait_for(client.start(), timeout=timeout_s)
    except Exception as error:
        with suppress(Exception):
            await asyncio.wait_for(client.stop(), timeout=5)
        raise CliError(
            f"cannot reach Kafka at {config.kafka_bootstrap_servers} ({type(error).__name__}): "
            f"check KAFKA_BOOTSTRAP_SERVERS (or {state_dir() / STACK_ENV})"
        ) from None


def kafka_options(config: CommonSettings) -> dict[str, Any]:
    try:
        return client_options(config)
    except (ValueError, OSError) as error:
        raise CliError(f"Kafka settings: {error}") from None


# --- output -----------------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, uuid.UUID | Decimal | Path):
        return str(value)
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"not JSON: {type(value).__name__}")


def emit_json(value: Any) -> None:
    """One JSON document on stdout (nothing else goes there with --json)."""
    sys.stdout.write(json.dumps(value, default=_plain, ensure_ascii=False) + "\n")


def to_json(value: Any) -> Any:
    return json.loads(json.dumps(value, default=_plain))


def amount(minor: int | None, unit: str) -> str:
    """Minor units as the major amount (Decimal, grouped), e.g. 1234567 EUR -> '12,345.67'; counts as they are."""
    if minor is None:
        return "-"
    if unit not in MINOR_UNITS:
        return f"{minor:,}"
    exponent = len(str(MINOR_UNITS[unit])) - 1
    return f"{Decimal(minor).scaleb(-exponent):,.{exponent}f}"


def money(minor: int | None, currency: str) -> str:
    """'EUR 12,345.67' (a count: '3')."""
    return amount(minor, currency) if currency not in MINOR_UNITS else f"{currency} {amount(minor, currency)}"


JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output: one JSON document on stdout.")]
DryRunOption = Annotated[bool, typer.Option("--dry-run", help="Show what the command would change; change nothing.")]
YesOption = Annotated[
    bool, typer.Option("--yes", "-y", help="Do not ask for confirmation (scripts). Without it, stdin must be a terminal.")
]


# --- changing state, safely and audited ---------------------------------------------------------------


@dataclass
class Effect:
    """What a command did (or, in a dry run, would do)."""

    outcome: str
    """One word for machines and the audit record, e.g. 'requested', 'released', 'unchanged'."""
    summary: str
    """One line for people, what changes: 'CeilingReset s3/2019 requested', 'nothing to release'."""
    changes: dict[str, Any] = field(default_factory=dict)
    """What changed, as JSON (money in integer minor units with its currency); the audit's `changes`."""
    detail: Any = None
    """Anything the command's own rendering needs (not recorded)."""


class _Rollback(Exception):
    def __init__(self, effect: Effect) -> None:
        super().__init__("dry run")
        self.effect = effect


Work = Callable[[UnitOfWork], Awaitable[Effect]]


async def in_audited_transaction(
    conn: Connection,
    *,
    service: str,
    command: str,
    arguments: Mapping[str, Any],
    work: Work,
    operator: str | None,
) -> tuple[Effect, uuid.UUID | None]:
    """Run `work` in one transaction on `service`'s schema. With an operator: commit it with its audit
    record (and AuditRecorded in the outbox). Without (a dry run): roll everything back."""
    try:
        async with conn.transaction():
            uow = UnitOfWork(conn=conn, schema=service, source=service_source(service), cause=None)
            effect = await work(uow)
            if operator is None:
                raise _Rollback(effect)
            audit_id = await audit.record(
                uow, operator=operator, command=command, arguments=arguments, outcome=effect.outcome, changes=effect.changes
            )
            return effect, audit_id
    except _Rollback as rollback:
        return rollback.effect, None


def operator_identity() -> str:
    try:
        return audit.operator_identity()
    except audit.OperatorUnknown as error:
        raise CliError(str(error)) from None


def refuse_unconfirmed(command: str, yes: bool) -> None:
    """Without --yes, a change needs a person at a terminal to confirm it."""
    if not yes and not sys.stdin.isatty():
        raise CliError(
            f"refusing to run `{PROG} {command}` without confirmation: stdin is not a terminal; add --yes (or --dry-run)"
        )


def confirm(command: str, summary: str) -> None:
    """Show what will change (on stderr: stdout stays clean for --json) and ask; no means nothing changes."""
    typer.echo(f"{PROG} {command}: this will be: {summary}", err=True)
    for _ in range(3):  # (not typer.confirm: it echoes part of its prompt on stdout)
        typer.echo("Go ahead? [y/N]: ", nl=False, err=True)
        answer = sys.stdin.readline()
        if not answer:  # end of input
            break
        word = answer.strip().lower()
        if word in ("y", "yes"):
            return
        if word in ("", "n", "no"):
            break
        typer.echo("please answer y or n", err=True)
    raise CliError("not confirmed: nothing changed", code=1)


def change(
    *,
    config: CommonSettings,
    service: str,
    command: str,
    arguments: Mapping[str, Any],
    work: Work,
    dry_run: bool,
    yes: bool,
    as_json: bool,
    show: Callable[[Effect, bool], None] | None = None,
) -> Effect:
    """The whole life of a command that changes state: preview, confirm, do it with its audit record.

    `work` must be safe to run twice (the preview, then the real run), as every operator command's
    use case is: it reads the state inside its transaction and decides again."""
    operator = None if dry_run else operator_identity()
    if not dry_run:
        refuse_unconfirmed(command, yes)

    async def once(who: str | None) -> tuple[Effect, uuid.UUID | None]:
        async with database(config) as conn:
            return await in_audited_transaction(
                conn, service=service, command=command, arguments=arguments, work=work, operator=who
            )

    if dry_run or not yes:
        preview, _ = run(once(None))
        if dry_run:
            _report(preview, service, command, arguments, None, as_json, show, dry_run=True)
            return preview
        confirm(command, preview.summary)
    assert operator is not None
    effect, audit_id = run(once(operator))
    _report(effect, service, command, arguments, audit_id, as_json, show, dry_run=False)
    return effect


def _report(
    effect: Effect,
    service: str,
    command: str,
    arguments: Mapping[str, Any],
    audit_id: uuid.UUID | None,
    as_json: bool,
    show: Callable[[Effect, bool], None] | None,
    *,
    dry_run: bool,
) -> None:
    if as_json:
        emit_json(
            {
                "command": command,
                "service": service,
                "dry_run": dry_run,
                "arguments": to_json(dict(arguments)),
                "outcome": effect.outcome,
                "summary": effect.summary,
                "changes": to_json(effect.changes),
                "audit_id": str(audit_id) if audit_id else None,
            }
        )
        return
    if show is not None:
        show(effect, dry_run)
    if dry_run:
        typer.echo(f"dry run, nothing changed. It would be: {effect.summary}")
    else:
        typer.echo(f"done: {effect.summary} (audit record {audit_id} in {service}.audit)")
