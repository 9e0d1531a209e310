"""`clustergrants review ...`: a case handler's commands on referred and decided applications.

    clustergrants review list [--scheme nic.cluster] [--json]
    clustergrants review record APP CRITERION passed|failed --reason ... --document DMS-1 --officer k-1042 [--yes]
    clustergrants review history APP [--json]

`list` shows the applications whose latest decision is `needs_review`, with the criteria a person
must decide. `record` writes the finding, the decision's next revision (EligibilityDecided in the
eligibility outbox, `decided_by: officer:<id>`) and its audit record in one transaction; a finding
can be recorded on any criterion of the latest revision (a correction, an appeal), again and again.
`--based-on-revision N` refuses the finding when someone else revised the decision after revision N.
The officer reference is opaque (a staff number, never a name): `--officer` or CLUSTERGRANTS_OFFICER.
Agency back offices do the same over HTTP on intake (`/v1/reviews`, officer tokens).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from services.cli_common import CliError, DryRunOption, Effect, JsonOption, YesOption, change, database, emit_json, run, settings
from services.eligibility.handlers import on_finding_recorded, repo_of
from services.eligibility.parameters import ParameterError, ParameterStore
from services.eligibility.repository import EligibilityRepository, Pending
from services.eligibility.revisions import FindingRefused, check_finding
from services.eligibility.settings import EligibilitySettings
from shared.delivery import PoisonMessage, UnitOfWork
from shared.events import FindingRecorded

app = typer.Typer(
    help="Case handling: applications waiting for review, findings, decision revisions.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.command("list")
def list_command(
    scheme: Annotated[str | None, typer.Option(help="Only this scheme's applications.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Applications waiting for a case handler, oldest submission first, with the criteria to decide."""
    config = settings(EligibilitySettings)

    async def load() -> list[Pending]:
        async with database(config) as conn:
            return await EligibilityRepository(conn).pending(scheme)

    pending = run(load())
    rows: list[dict[str, Any]] = [
        {
            "application_id": p.decision.application_id,
            "scheme": p.decision.scheme,
            "submitted_at": p.submitted_at.isoformat(),
            "revision": p.decision.revision,
            "criteria": [
                {"criterion": c.criterion, "message_key": c.message_key}
                for c in p.decision.criteria
                if c.outcome == "not_decidable"
            ],
        }
        for p in pending
    ]
    if as_json:
        emit_json({"pending": rows})
        return
    table = Table(title="applications waiting for review")
    for column in ("application", "scheme", "submitted", "revision", "to decide"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row["application_id"],
            row["scheme"],
            row["submitted_at"],
            str(row["revision"]),
            ", ".join(f"{c['criterion']} ({c['message_key']})" for c in row["criteria"]),
        )
    Console().print(table)
    typer.echo(f"{len(rows)} waiting for review")


@app.command("record")
def record_command(
    application_id: Annotated[str, typer.Argument(help="The application.")],
    criterion: Annotated[str, typer.Argument(help="The criterion found on (see `review list` or `review history`).")],
    outcome: Annotated[str, typer.Argument(help="passed or failed.")],
    reason: Annotated[str, typer.Option(help="Why, in a sentence.")],
    document: Annotated[str, typer.Option(help="Reference of the file or document seen.")],
    officer: Annotated[str, typer.Option(envvar="CLUSTERGRANTS_OFFICER", help="Your opaque officer reference.")],
    based_on_revision: Annotated[int | None, typer.Option(min=1, help="Refuse if the decision moved past it.")] = None,
    dry_run: DryRunOption = False,
    yes: YesOption = False,
    as_json: JsonOption = False,
) -> None:
    """Record a finding on one criterion; eligibility publishes the decision's next revision."""
    config = settings(EligibilitySettings)
    try:
        parameters = ParameterStore.load(operator_file=config.eligibility_operator_parameters_file)
    except (ParameterError, OSError) as error:
        raise CliError(f"parameters: {error}") from None
    if outcome not in ("passed", "failed"):
        raise CliError(f"outcome must be passed or failed, not {outcome!r}")
    verdict: Literal["passed", "failed"] = "passed" if outcome == "passed" else "failed"
    finding_id = f"finding-{uuid.uuid4()}"
    try:
        finding = FindingRecorded(
            application_id=application_id,
            finding_id=finding_id,
            criterion=criterion,
            outcome=verdict,
            reason=reason,
            document_reference=document,
            officer=officer,
            recorded_at=datetime.now(UTC),
            based_on_revision=based_on_revision,
        )
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        raise CliError(f"finding refused: {problems}") from None

    async def work(uow: UnitOfWork) -> Effect:
        latest = await repo_of(uow).latest(application_id)
        if latest is None:
            raise CliError(f"{application_id} has not been decided: nothing to review")
        if based_on_revision is not None and latest.decision.revision != based_on_revision:
            raise CliError(
                f"{application_id} is at revision {latest.decision.revision}, not {based_on_revision}: "
                "someone revised it since; look at `review history` and record again"
            )
        try:
            check_finding(latest.decision, finding)
            revised = await on_finding_recorded(uow, finding, parameters)
        except (FindingRefused, PoisonMessage) as error:
            raise CliError(f"finding refused: {error}") from None
        assert revised is not None
        new = revised.decision
        return Effect(
            "revised",
            f"{application_id}: {criterion} {verdict} by officer:{officer}; revision {new.revision} "
            f"{revised.previous.outcome} -> {new.outcome} is in the eligibility outbox",
            {
                "application_id": application_id,
                "finding_id": finding_id,
                "criterion": criterion,
                "finding": verdict,
                "officer": officer,
                "document_reference": document,
                "revision": new.revision,
                "outcome_before": revised.previous.outcome,
                "outcome_after": new.outcome,
            },
        )

    change(
        config=config,
        service="eligibility",
        command="review record",
        arguments={
            "application_id": application_id,
            "criterion": criterion,
            "outcome": verdict,
            "document": document,
            "officer": officer,
            "based_on_revision": based_on_revision,
        },
        work=work,
        dry_run=dry_run,
        yes=yes,
        as_json=as_json,
    )


@app.command("history")
def history_command(
    application_id: Annotated[str, typer.Argument(help="The application.")],
    as_json: JsonOption = False,
) -> None:
    """Every revision of the application's decision and every finding recorded on it."""
    config = settings(EligibilitySettings)

    async def load() -> dict[str, list[dict[str, Any]]]:
        async with database(config) as conn:
            return await EligibilityRepository(conn).history(application_id)

    found = run(load())
    if not found["revisions"]:
        raise CliError(f"{application_id} has not been decided")
    if as_json:
        emit_json({"application_id": application_id, **found})
        return
    console = Console()
    table = Table(title=f"{application_id}: revisions")
    for column in ("revision", "decided by", "outcome", "decided at", "event id"):
        table.add_column(column)
    for r in found["revisions"]:
        table.add_row(str(r["revision"]), r["decided_by"], r["outcome"], r["decided_at"].isoformat(), r["event_id"] or "-")
    console.print(table)
    if found["findings"]:
        table = Table(title="findings")
        for column in ("revision", "criterion", "finding", "officer", "document", "recorded at"):
            table.add_column(column)
        for f in found["findings"]:
            table.add_row(
                str(f["revision"]),
                f["criterion"],
                f["outcome"],
                f["officer"],
                f["document_reference"],
                f["recorded_at"].isoformat(),
            )
        console.print(table)
