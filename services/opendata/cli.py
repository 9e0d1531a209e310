"""`clustergrants export ...`: open data of committed grants (`python -m
services.opendata.cli ...` runs the same commands).

    clustergrants export 360giving --format json --output grants.json
    clustergrants export 360giving --format csv --output grants.csv
    clustergrants export eu-operations --output operations.csv

Reads DATABASE_URL (the `opendata` schema: the read model the open-data service projects from
the topics) and OPENDATA_FILE (operator identifiers and names, see
services/opendata/opendata.example.yaml). `--output -` writes to stdout.
A refused export (an unset operator key, a grant whose application is not projected yet) prints one line naming
what is missing and exits with code 2; nothing is written.
"""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from services.cli_common import CliError, database, run, settings
from services.opendata import export as opendata
from services.opendata.repository import OpenDataRepository
from services.opendata.settings import ExportSettings

app: typer.Typer = typer.Typer(
    help="Open data: 360Giving and the EU list of operations.", no_args_is_help=True, pretty_exceptions_enable=False
)


class Format(StrEnum):
    json = "json"
    csv = "csv"


def _fail(message: str) -> CliError:
    return CliError(message)


def _load(programmes: list[str] | None) -> tuple[list[opendata.CommittedGrant], opendata.OpenDataConfig]:
    config_settings = settings(ExportSettings)
    try:
        config = opendata.load_config(config_settings.opendata_file)
    except opendata.OpenDataError as error:
        raise _fail(str(error)) from None

    async def read() -> list[opendata.CommittedGrant]:
        async with database(config_settings) as conn:
            return await OpenDataRepository(conn).committed(programmes=programmes or None)

    try:
        return run(read()), config
    except opendata.OpenDataError as error:
        raise _fail(str(error)) from None


def _target(output: str) -> Path | None:
    return None if output == "-" else Path(output)


Output = Annotated[str, typer.Option("--output", "-o", help="File to write ('-': stdout, nothing else goes there).")]
Programmes = Annotated[list[str] | None, typer.Option("--programme", help="Only this budget programme (repeatable).")]


@app.command("360giving")
def threesixtygiving(
    output: Output,
    fmt: Annotated[Format, typer.Option("--format", help="json: the data package; csv: one row per grant.")] = Format.json,
    programme: Programmes = None,
) -> None:
    """Committed grants in the 360Giving Data Standard (1.4): a JSON package or the CSV form."""
    grants, config = _load(programme)
    target = _target(output)
    try:
        count = opendata.write_360giving(grants, config, target or sys.stdout, fmt=fmt.value)
    except opendata.OpenDataError as error:
        raise _fail(str(error)) from None
    except OSError as error:
        raise _fail(f"cannot write {output}: {error.strerror or type(error).__name__}") from None
    typer.echo(f"360Giving {fmt.value}: {count} grant(s) written to {output}", err=True)


@app.command("eu-operations")
def eu_operations(output: Output, programme: Programmes = None) -> None:
    """Grants with an EU fund share as the list of operations of CPR 2021/1060 Article 49(3) (CSV)."""
    grants, config = _load(programme)
    target = _target(output)
    try:
        count = opendata.write_eu_operations(grants, config, target or sys.stdout)
    except opendata.OpenDataError as error:
        raise _fail(str(error)) from None
    except OSError as error:
        raise _fail(f"cannot write {output}: {error.strerror or type(error).__name__}") from None
    typer.echo(f"EU list of operations: {count} operation(s) written to {output}", err=True)


if __name__ == "__main__":
    from services.cli import main

    main(["export", *sys.argv[1:]])
