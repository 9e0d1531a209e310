"""`clustergrants budget ...`: the budget ledger's operator commands (DATABASE_URL and
BUDGET_POTS_FILE as for the service; `python -m services.budget.cli ...` runs the same commands).

    clustergrants budget balances [--programme ttc] [--json]
    clustergrants budget beneficiaries [--beneficiary ID] [--json]   # each beneficiary's ceilings: used, maximum
    clustergrants budget reconcile [--json]              # exit 1 if any balance differs from its entries
    clustergrants budget open-year s3 2019 [--dry-run] [--yes]
    clustergrants budget open-year vlaio.hermes 2021 --yearly-maximum-minor 40000000
    clustergrants budget release APPLICATION_ID --withdraw [--dry-run] [--yes]
    clustergrants budget release APPLICATION_ID --reduce 2022=30000000 --reduce 2023=0

`open-year` and `release` change money: they show what they will do (`--dry-run` stops there), ask
for confirmation on a terminal (`--yes` for scripts), and write their effect, its events in the
budget outbox and an audit record (`budget.audit`, AuditRecorded) in one transaction. The running
service's relay publishes the events; it applies a CeilingReset when it consumes it. Both are
idempotent: a year is asked for once; a release returns only what is left. `open-year` accepts only
the next year inside the programme's period (services/budget/pots.yaml, BUDGET_POTS_FILE).
"""

from __future__ import annotations

import sys
import uuid
from typing import Annotated, Any

import asyncpg
import typer

from services.budget import config as budget_config
from services.budget import handlers, views
from services.budget.domain import BudgetConfig, ReleaseError
from services.budget.repository import LedgerRepository
from services.budget.settings import BudgetSettings
from services.cli_common import (
    CliError,
    DryRunOption,
    Effect,
    JsonOption,
    YesOption,
    amount,
    change,
    database,
    emit_json,
    money,
    run,
    settings,
    to_json,
)
from shared.db import Connection
from shared.delivery import UnitOfWork

app: typer.Typer = typer.Typer(
    help="Budget ledger: balances, reconciliation, year openings, releases.", no_args_is_help=True, pretty_exceptions_enable=False
)


def _config(budget_settings: BudgetSettings) -> BudgetConfig:
    try:
        return budget_config.load(budget_settings.budget_pots_file)
    except budget_config.ConfigError as error:
        raise CliError(f"budget configuration: {error}") from None


def _ledger(uow: UnitOfWork) -> UnitOfWork[LedgerRepository]:
    """The command's unit of work (its transaction, its outbox) carrying the ledger's repository."""
    return UnitOfWork(conn=uow.conn, schema=uow.schema, source=uow.source, repo=LedgerRepository(uow.conn))


@app.command()
def balances(
    programme: Annotated[str | None, typer.Option(help="Only this programme, e.g. ttc.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Each pot's total, committed, released and available amount, per budget year and unit."""
    config = settings(BudgetSettings)

    async def read() -> list[dict[str, Any]]:
        async with database(config) as conn:
            return await views.balances(conn, programme)

    rows = run(read())
    if as_json:
        emit_json(to_json(rows))  # amounts in minor units (counts for `count` pots)
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
def beneficiaries(
    beneficiary: Annotated[str | None, typer.Option(help="Only this register identity, e.g. BE-BCE_KBO-0700000005.")] = None,
    as_json: JsonOption = False,
) -> None:
    """What each beneficiary holds of each ceiling across its grants, and the maximum it was held to."""
    config = settings(BudgetSettings)

    async def read() -> list[dict[str, Any]]:
        async with database(config) as conn:
            return await views.beneficiaries(conn, beneficiary)

    rows = run(read())
    if as_json:
        emit_json(to_json(rows))  # money in minor units; counts and years as numbers
        return
    header = f"{'beneficiary':<34} {'ceiling':<40} {'year':<6} {'used':>18} {'maximum':>18}"
    typer.echo(header)
    typer.echo("-" * len(header))
    for row in rows:
        unit = row["unit"]
        year = str(row["budget_year"]) if row["budget_year"] else "all"
        maximum = amount(row["maximum"], unit)
        typer.echo(f"{row['beneficiary_id']:<34} {row['limit_id']:<40} {year:<6} {amount(row['used'], unit):>18} {maximum:>18}")


@app.command()
def reconcile(as_json: JsonOption = False) -> None:
    """Prove every materialised balance equals the sum of its entries; exit 1 loudly if not."""
    config = settings(BudgetSettings)

    async def check() -> list[dict[str, Any]]:
        async with database(config) as conn:
            return await views.reconcile(conn)

    problems = run(check())
    if as_json:
        emit_json({"ok": not problems, "problems": to_json(problems)})
    elif problems:
        typer.echo(f"RECONCILIATION FAILED: {len(problems)} difference(s)", err=True)
        for problem in problems:
            typer.echo(views.dumps(problem), err=True)
    else:
        typer.echo("reconciliation ok: every pot and slice equals the sum of its entries")
    if problems:
        raise typer.Exit(1)


async def _reset_preview(conn: Connection, programme: str, budget_year: int) -> dict[str, Any]:
    """What the CeilingReset will do when the service applies it: slices it closes and opens."""
    rows = await conn.fetch(
        """SELECT budget_year, state, unit, count(*) AS slices, sum(amount_minor)::bigint AS amount_minor
           FROM budget.slices
           WHERE programme = $1 AND state IN ('scheduled', 'open') AND budget_year <= $2
           GROUP BY budget_year, state, unit ORDER BY budget_year, state, unit""",
        programme,
        budget_year,
    )

    def part(selected: list[asyncpg.Record]) -> list[dict[str, Any]]:
        return [
            {
                "budget_year": r["budget_year"],
                "state": r["state"],
                "unit": r["unit"],
                "slices": r["slices"],
                "amount": r["amount_minor"],
            }
            for r in selected
        ]

    return {
        "closes": part([r for r in rows if r["budget_year"] < budget_year]),
        "opens": part([r for r in rows if r["budget_year"] == budget_year and r["state"] == "scheduled"]),
    }


def _slices_text(parts: list[dict[str, Any]]) -> str:
    return ", ".join(f"{p['budget_year']}: {p['slices']} slice(s) {money(p['amount'], p['unit'])}" for p in parts) or "none"


@app.command("open-year")
def open_year(
    programme: Annotated[str, typer.Argument(help="The budget programme, e.g. s3, vlaio.clusters, vlaio.hermes.")],
    budget_year: Annotated[
        int, typer.Argument(help="The year to open: the next one inside the programme's period, nothing else.")
    ],
    yearly_maximum_minor: Annotated[
        int | None,
        typer.Option(min=0, help="The agency's yearly maximum for this year, in minor units (required for vlaio.hermes)."),
    ] = None,
    dry_run: DryRunOption = False,
    yes: YesOption = False,
    as_json: JsonOption = False,
) -> None:
    """Request the CeilingReset that opens BUDGET_YEAR for PROGRAMME (once per programme and year).

    The budget service applies it when it consumes it: earlier years' slices close, the year's open."""
    budget_settings = settings(BudgetSettings)
    config = _config(budget_settings)

    async def work(uow: UnitOfWork) -> Effect:
        ledger = _ledger(uow)
        try:
            outcome = await handlers.request_year_opening(ledger, config, programme, budget_year, yearly_maximum_minor)
        except ValueError as error:
            raise CliError(f"refused: {error}") from None
        preview = await _reset_preview(uow.conn, programme, budget_year)
        currency = config.programmes[programme].currency
        maximum = f", yearly maximum {money(yearly_maximum_minor, currency)}" if yearly_maximum_minor is not None else ""
        if outcome == "already_requested":
            return Effect("unchanged", f"{programme}/{budget_year} was requested before: nothing new", {"requested": False})
        return Effect(
            "requested",
            f"CeilingReset {programme}/{budget_year} requested{maximum}; when the budget service applies it, it closes "
            f"{_slices_text(preview['closes'])} and opens {_slices_text(preview['opens'])}",
            {
                "requested": True,
                "reset_id": handlers.reset_id(programme, budget_year),
                "event_id": handlers.reset_event_id(programme, budget_year),
                "yearly_maximum": {"amount_minor": yearly_maximum_minor, "currency": currency}
                if yearly_maximum_minor is not None
                else None,
                "when_applied": preview,
            },
        )

    change(
        config=budget_settings,
        service="budget",
        command="budget open-year",
        arguments={"programme": programme, "budget_year": budget_year, "yearly_maximum_minor": yearly_maximum_minor},
        work=work,
        dry_run=dry_run,
        yes=yes,
        as_json=as_json,
    )


def _parse_reduce(values: list[str]) -> dict[int, int]:
    reduce_to: dict[int, int] = {}
    for value in values:
        year, sep, minor = value.partition("=")
        if not sep or not year.isdigit() or not minor.isdigit():
            raise CliError(f"--reduce {value!r}: expected YEAR=AMOUNT_MINOR, e.g. 2022=30000000")
        if int(year) in reduce_to:
            raise CliError(f"--reduce: year {year} given twice")
        reduce_to[int(year)] = int(minor)
    return reduce_to


@app.command()
def release(
    application_id: Annotated[str, typer.Argument(help="The application whose committed grant is released.")],
    withdraw: Annotated[bool, typer.Option("--withdraw", help="The grant is withdrawn: return every future slice.")] = False,
    reduce: Annotated[
        list[str] | None,
        typer.Option(help="YEAR=AMOUNT_MINOR: cut that future year to this amount in minor units (repeatable)."),
    ] = None,
    dry_run: DryRunOption = False,
    yes: YesOption = False,
    as_json: JsonOption = False,
) -> None:
    """Return a grant's future (not yet opened) slices to its pots, as release entries."""
    if withdraw == bool(reduce):
        raise CliError("give either --withdraw or at least one --reduce YEAR=AMOUNT_MINOR")
    reduce_to = None if withdraw else _parse_reduce(reduce or [])
    budget_settings = settings(BudgetSettings)
    cause = f"cli:{uuid.uuid4()}"

    async def work(uow: UnitOfWork) -> Effect:
        ledger = _ledger(uow)
        try:
            event = await handlers.release_grant(ledger, application_id, reduce_to, cause=cause)
        except ReleaseError as error:
            raise CliError(f"refused: {error}") from None
        if event is None:
            return Effect("unchanged", f"nothing to release for {application_id} (withdrawn before, or no future slice to cut)")
        total: dict[str, int] = {}
        for r in event.released:
            total[r.amount.currency] = total.get(r.amount.currency, 0) + r.amount.amount_minor
        parts = ", ".join(f"{r.budget_year} {r.fund} {money(r.amount.amount_minor, r.amount.currency)}" for r in event.released)
        left = (
            ", ".join(f"{s.budget_year} {money(s.amount.amount_minor, s.amount.currency)}" for s in event.remaining) or "nothing"
        )
        returned = " + ".join(money(v, c) for c, v in total.items()) or "no money"
        return Effect(
            "released",
            f"grant of {application_id} {event.reason}: {returned} returned to its pots "
            f"({parts or 'counts only'}); it keeps {left}",
            {"cause": cause, **event.model_dump(mode="json")},
        )

    change(
        config=budget_settings,
        service="budget",
        command="budget release",
        arguments={"application_id": application_id, "withdraw": withdraw, "reduce": reduce_to},
        work=work,
        dry_run=dry_run,
        yes=yes,
        as_json=as_json,
    )


if __name__ == "__main__":
    from services.cli import main

    main(["budget", *sys.argv[1:]])
