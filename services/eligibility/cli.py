"""Operator commands of the eligibility service (also mounted in the `clustergrants` CLI).

python -m services.eligibility.cli close-call s3.platform s3-2018 [--cap 25]
python -m services.eligibility.cli what-if --proposed-operator-file new.yaml [--scheme nic.cluster]
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import asyncpg
import typer
from rich.console import Console
from rich.table import Table

from services.eligibility.calls import CallError, close_call
from services.eligibility.parameters import ParameterError, ParameterStore
from services.eligibility.settings import EligibilitySettings
from services.eligibility.whatif import what_if
from shared.db import create_pool
from shared.delivery import UnitOfWork
from shared.events import Application
from shared.settings import database_ssl

app = typer.Typer(help="Eligibility: competitive calls and rule-set what-ifs.", no_args_is_help=True)
console = Console()


def _fail(message: str) -> typer.Exit:
    console.print(f"[red]error:[/red] {message}")
    return typer.Exit(2)


def _load(operator_file: str | None, schemes_dir: Path | None = None) -> ParameterStore:
    try:
        return ParameterStore.load(schemes_dir=schemes_dir, operator_file=operator_file)
    except (ParameterError, OSError) as error:
        raise _fail(str(error)) from None


async def _connect(settings: EligibilitySettings) -> asyncpg.Pool:
    try:
        return await create_pool(settings.database_url.get_secret_value(), 1, 2, database_ssl(settings))
    except (OSError, asyncpg.PostgresError) as error:
        raise _fail(f"cannot reach PostgreSQL ({type(error).__name__}): is DATABASE_URL right?") from None


@app.command("close-call")
def close_call_command(
    scheme: Annotated[str, typer.Argument(help="s3.platform or nic.cluster")],
    call_id: Annotated[str, typer.Argument(help="The call id applications carry in `call_id`.")],
    cap: Annotated[int | None, typer.Option(min=0, help="Override the operator's selection cap.")] = None,
) -> None:
    """Rank the call's eligible applications by assessors' scores and publish CallClosed (once)."""
    settings = EligibilitySettings()
    parameters = _load(settings.eligibility_operator_parameters_file)

    async def run() -> None:
        pool = await _connect(settings)
        try:
            async with pool.acquire() as conn, conn.transaction():
                uow = UnitOfWork(conn=conn, schema="eligibility", source="/clustergrants/eligibility", cause=None)
                result, new = await close_call(uow, parameters, scheme, call_id, cap)
        except CallError as error:
            raise _fail(str(error)) from None
        finally:
            await pool.close()
        table = Table(title=f"{scheme} call {call_id}: {'closed now' if new else 'closed before'} (cap {result.cap})")
        for column in ("rank", "application", "total score", "selected"):
            table.add_column(column)
        for r in result.ranking:
            table.add_row(str(r.rank), r.application_id, r.total_score, "yes" if r.selected else "no")
        console.print(table)
        console.print(f"tie rule: {result.tie_rule}")
        if result.unscored:
            console.print(f"[yellow]not ranked (a criterion had no score):[/yellow] {', '.join(result.unscored)}")
        if new:
            console.print("CallClosed is in the eligibility outbox; the running service publishes it.")

    asyncio.run(run())


@app.command("what-if")
def what_if_command(
    proposed_operator_file: Annotated[
        Path | None, typer.Option(exists=True, dir_okay=False, help="Proposed operator parameters (YAML).")
    ] = None,
    proposed_schemes_dir: Annotated[
        Path | None, typer.Option(exists=True, file_okay=False, help="Proposed scheme parameters (a copy of schemes/).")
    ] = None,
    scheme: Annotated[str | None, typer.Option(help="Only this scheme's applications.")] = None,
    show_unchanged: bool = False,
) -> None:
    """Replay stored applications through proposed parameters; report what would change. Publishes nothing."""
    if proposed_operator_file is None and proposed_schemes_dir is None:
        raise _fail("give --proposed-operator-file and/or --proposed-schemes-dir")
    settings = EligibilitySettings()
    current = _load(settings.eligibility_operator_parameters_file)
    proposed = _load(
        str(proposed_operator_file) if proposed_operator_file else settings.eligibility_operator_parameters_file,
        proposed_schemes_dir,
    )

    async def load_applications() -> list[Application]:
        pool = await _connect(settings)
        try:
            rows = await pool.fetch(
                "SELECT application FROM eligibility.applications WHERE $1::text IS NULL OR scheme = $1 "
                "ORDER BY submitted_at, application_id",
                scheme,
            )
        finally:
            await pool.close()
        return [Application.model_validate(r["application"]) for r in rows]

    applications = asyncio.run(load_applications())
    results = what_if(applications, current, proposed)
    table = Table(title="what-if: stored applications under the proposed parameters")
    for column in ("application", "scheme", "outcome now", "outcome then", "total now", "total then", "criteria changed"):
        table.add_column(column)
    changed = 0
    for r in results:
        changed += r.changed
        if r.changed or show_unchanged:
            table.add_row(
                r.application_id,
                r.scheme,
                r.outcome_before,
                r.outcome_after,
                str(r.total_before or "-"),
                str(r.total_after or "-"),
                ", ".join(f"{c.criterion}: {c.before}->{c.after}" for c in r.criteria_changed) or "-",
            )
    console.print(table)
    console.print(f"what-if: {len(results)} applications replayed, {changed} would change, nothing published")


if __name__ == "__main__":
    app()
