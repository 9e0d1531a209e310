"""Operator commands of the budget ledger (DATABASE_URL, BUDGET_POTS_FILE as for the service):

    python -m services.budget.cli balances [--programme ttc] [--json]
    python -m services.budget.cli reconcile                     # exit 1 if any balance differs from its entries
    python -m services.budget.cli open-year vlaio.hermes 2021 --yearly-maximum-minor 40000000
    python -m services.budget.cli release APPLICATION_ID --withdraw
    python -m services.budget.cli release APPLICATION_ID --reduce 2022=30000000 --reduce 2023=0

open-year and release write their events into the budget outbox in the same transaction as their
records; the running service's relay publishes them (the service applies a CeilingReset when it
consumes it). Both are idempotent: a year is asked for once; a release returns only what is left.
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import asyncpg
import typer

from services.budget import config as budget_config
from services.budget import handlers, repository
from services.budget.domain import COUNT, ReleaseError
from services.budget.settings import BudgetSettings
from shared.db import create_pool
from shared.delivery import UnitOfWork
from shared.money import MINOR_UNITS
from shared.settings import database_ssl

app = typer.Typer(help="Budget ledger: balances, reconciliation, year openings, releases.", no_args_is_help=True)
T = TypeVar("T")
SOURCE = "/clustergrants/budget"


def _run(work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
    settings = BudgetSettings()

    async def main() -> T:
        pool = await create_pool(settings.database_url.get_secret_value(), 1, 2, database_ssl(settings))
        try:
            async with pool.acquire() as conn:
                return await work(conn)
        finally:
            await pool.close()

    return asyncio.run(main())


def amount(value: int | None, unit: str) -> str:
    """Minor units as the major amount with its unit; counts as they are. Never a float."""
    if value is None:
        return "-"
    if unit == COUNT:
        return f"{value:,}"
    major, minor = divmod(abs(value), MINOR_UNITS[unit])
    return f"{'-' if value < 0 else ''}{major:,}.{minor:02d}"


@app.command()
def balances(
    programme: Annotated[str | None, typer.Option(help="Only this programme.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line, amounts in minor units.")] = False,
) -> None:
    """Each pot's total, committed, released and available amount, per budget year and unit."""
    rows = _run(lambda conn: repository.balances(conn, programme))
    if as_json:
        for row in rows:
            typer.echo(repository.dumps(row))
        return
    columns = ("total", "committed", "released", "available", "opened")
    header = f"{'pot':<34} {'unit':<5} {'year':<6} " + " ".join(f"{c:>18}" for c in columns)
    typer.echo(header)
    typer.echo("-" * len(header))
    seen: set[str] = set()
    for row in rows:
        unit = row["unit"]
        if row["pot_id"] not in seen:
            seen.add(row["pot_id"])
            available = row["total_minor"] - row["committed_minor"] + row["released_minor"]
            year = str(row["pot_year"]) if row["pot_year"] is not None else "all"
            typer.echo(
                f"{row['pot_id']:<34} {unit:<5} {year:<6} {amount(row['total_minor'], unit):>18} "
                f"{amount(row['committed_minor'], unit):>18} {amount(row['released_minor'], unit):>18} "
                f"{amount(available, unit):>18} {'':>18}"
            )
        if row["budget_year"] is not None:
            typer.echo(
                f"{'  ' + row['pot_id']:<34} {unit:<5} {row['budget_year']!s:<6} {'':>18} "
                f"{amount(row['committed'], unit):>18} {amount(row['released'], unit):>18} "
                f"{amount(row['committed'] - row['released'], unit):>18} {amount(row['opened'], unit):>18}"
            )
    typer.echo("(year 'all': the pot; indented: what each budget year drew on it, net of releases.)")


@app.command()
def reconcile() -> None:
    """Prove every materialised balance equals the sum of its entries; exit 1 loudly if not."""
    problems = _run(repository.reconcile)
    if problems:
        typer.echo(f"RECONCILIATION FAILED: {len(problems)} difference(s)", err=True)
        for problem in problems:
            typer.echo(repository.dumps(problem), err=True)
        raise typer.Exit(1)
    typer.echo("reconciliation ok: every pot and slice equals the sum of its entries")


@app.command("open-year")
def open_year(
    programme: str,
    budget_year: int,
    yearly_maximum_minor: Annotated[
        int | None, typer.Option(min=0, help="The agency's yearly maximum per grant for this year, in minor units.")
    ] = None,
) -> None:
    """Publish CeilingReset for PROGRAMME and BUDGET_YEAR (once per programme and year)."""
    config = budget_config.load(BudgetSettings().budget_pots_file)

    async def work(conn: asyncpg.Connection) -> str:
        async with conn.transaction():
            uow = UnitOfWork(conn=conn, schema="budget", source=SOURCE, cause=None)
            return await handlers.request_year_opening(uow, config, programme, budget_year, yearly_maximum_minor)

    try:
        outcome = _run(work)
    except ValueError as error:
        typer.echo(f"refused: {error}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"{programme}/{budget_year}: {outcome.replace('_', ' ')}")


def _parse_reduce(values: list[str]) -> dict[int, int]:
    reduce_to: dict[int, int] = {}
    for value in values:
        year, sep, minor = value.partition("=")
        if not sep or not year.isdigit() or not minor.isdigit():
            raise typer.BadParameter(f"{value!r}: expected YEAR=AMOUNT_MINOR, e.g. 2022=30000000")
        reduce_to[int(year)] = int(minor)
    return reduce_to


@app.command()
def release(
    application_id: str,
    withdraw: Annotated[bool, typer.Option(help="The grant is withdrawn: return every future slice.")] = False,
    reduce: Annotated[
        list[str] | None, typer.Option(help="YEAR=AMOUNT_MINOR: cut a future year to this amount (repeatable).")
    ] = None,
) -> None:
    """Return a grant's future (not yet opened) slices to its pots, as release entries."""
    if withdraw == bool(reduce):
        raise typer.BadParameter("give either --withdraw or at least one --reduce")
    reduce_to = None if withdraw else _parse_reduce(reduce or [])
    cause = f"cli:{uuid.uuid4()}"

    async def work(conn: asyncpg.Connection) -> dict[str, Any] | None:
        async with conn.transaction():
            uow = UnitOfWork(conn=conn, schema="budget", source=SOURCE, cause=None)
            event = await handlers.release_grant(uow, application_id, reduce_to, cause=cause)
            return event.model_dump(mode="json") if event else None

    try:
        event = _run(work)
    except ReleaseError as error:
        typer.echo(f"refused: {error}", err=True)
        raise typer.Exit(2) from None
    typer.echo(json.dumps(event) if event else "nothing to release")


def main() -> None:
    try:
        app()
    except budget_config.ConfigError as error:
        print(f"configuration error: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
