"""`clustergrants calls ...`: the eligibility service's operator commands (`python -m
services.eligibility.cli ...` runs the same commands).

    clustergrants calls close-call s3.platform s3-2018 [--cap 25] [--dry-run] [--yes] [--json]
    clustergrants calls what-if --proposed-operator-file new.yaml [--scheme nic.cluster] [--json]
    clustergrants calls re-decide --pending [--scheme nic.cluster] [--dry-run] [--yes] [--json]

`close-call` selects who gets money: it shows the ranking it will publish (`--dry-run` stops there),
asks for confirmation on a terminal (`--yes` for scripts), and writes the closed call, CallClosed in
the eligibility outbox and its audit record (`eligibility.audit`, AuditRecorded) in one transaction.
`what-if` only reads. `re-decide --pending` replays the applications waiting for review through the
parameters now in force (a case handler's findings kept) and publishes the next revision of each
decision whose outcome changes, with one audit record; `--dry-run` prints the table and changes nothing.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from services.cli_common import CliError, DryRunOption, Effect, JsonOption, YesOption, change, database, emit_json, run, settings
from services.eligibility.calls import CallError, close_call
from services.eligibility.handlers import redecide, repo_of
from services.eligibility.parameters import ParameterError, ParameterStore
from services.eligibility.settings import EligibilitySettings
from services.eligibility.whatif import what_if
from shared.delivery import UnitOfWork
from shared.events import Application, CallClosed

app: typer.Typer = typer.Typer(
    help="Eligibility: competitive calls and rule-set what-ifs.", no_args_is_help=True, pretty_exceptions_enable=False
)


def _load(operator_file: str | None, schemes_dir: Path | None = None) -> ParameterStore:
    try:
        return ParameterStore.load(schemes_dir=schemes_dir, operator_file=operator_file)
    except (ParameterError, OSError) as error:
        raise CliError(f"parameters: {error}") from None


def _show_ranking(effect: Effect, dry_run: bool) -> None:
    result, new = effect.detail
    assert isinstance(result, CallClosed)
    state = "would close now" if dry_run and new else "closed now" if new else "closed before"
    table = Table()
    for column in ("rank", "application", "total score", "selected"):
        table.add_column(column)
    for r in result.ranking:
        table.add_row(str(r.rank), r.application_id, r.total_score, "yes" if r.selected else "no")
    console = Console()
    console.print(f"{result.scheme} call {result.call_id}: {state} (cap {result.cap})")
    console.print(table)
    console.print(f"tie rule: {result.tie_rule}")
    if result.unscored:
        console.print(f"not ranked (a criterion had no score): {', '.join(result.unscored)}")


@app.command("close-call")
def close_call_command(
    scheme: Annotated[str, typer.Argument(help="The competitive scheme: s3.platform or nic.cluster.")],
    call_id: Annotated[str, typer.Argument(help="The call id applications carry in `call_id`.")],
    cap: Annotated[int | None, typer.Option(min=0, help="Override the operator's selection cap.")] = None,
    dry_run: DryRunOption = False,
    yes: YesOption = False,
    as_json: JsonOption = False,
) -> None:
    """Rank the call's eligible applications by assessors' scores and publish CallClosed (once)."""
    config = settings(EligibilitySettings)
    parameters = _load(config.eligibility_operator_parameters_file)

    async def work(uow: UnitOfWork) -> Effect:
        try:
            result, new = await close_call(uow, parameters, scheme, call_id, cap)
        except CallError as error:
            raise CliError(f"refused: {error}") from None
        selected = [r.application_id for r in result.ranking if r.selected]
        if not new:
            return Effect(
                "unchanged",
                f"call {call_id} was closed before ({len(selected)} selected, cap {result.cap}): nothing new",
                {"closed_before": True},
                (result, new),
            )
        return Effect(
            "closed",
            f"call {call_id} of {scheme} closed: {len(selected)} of {len(result.ranking)} ranked selected (cap {result.cap}), "
            f"{len(result.unscored)} not ranked; CallClosed is in the eligibility outbox",
            {"call_id": call_id, "scheme": scheme, "cap": result.cap, "selected": selected, **result.model_dump(mode="json")},
            (result, new),
        )

    change(
        config=config,
        service="eligibility",
        command="calls close-call",
        arguments={"scheme": scheme, "call_id": call_id, "cap": cap},
        work=work,
        dry_run=dry_run,
        yes=yes,
        as_json=as_json,
        show=_show_ranking,
    )


@app.command("what-if")
def what_if_command(
    proposed_operator_file: Annotated[
        Path | None, typer.Option(exists=True, dir_okay=False, help="Proposed operator parameters (YAML).")
    ] = None,
    proposed_schemes_dir: Annotated[
        Path | None, typer.Option(exists=True, file_okay=False, help="Proposed scheme parameters (a copy of schemes/).")
    ] = None,
    scheme: Annotated[str | None, typer.Option(help="Only this scheme's applications.")] = None,
    show_unchanged: Annotated[bool, typer.Option(help="Also list applications whose outcome would not change.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Replay stored applications through proposed parameters; report what would change. Publishes nothing."""
    if proposed_operator_file is None and proposed_schemes_dir is None:
        raise CliError("give --proposed-operator-file and/or --proposed-schemes-dir")
    config = settings(EligibilitySettings)
    current = _load(config.eligibility_operator_parameters_file)
    proposed = _load(
        str(proposed_operator_file) if proposed_operator_file else config.eligibility_operator_parameters_file,
        proposed_schemes_dir,
    )

    async def load_applications() -> list[Application]:
        async with database(config) as conn:
            rows = await conn.fetch(
                "SELECT application FROM eligibility.applications WHERE $1::text IS NULL OR scheme = $1 "
                "ORDER BY submitted_at, application_id",
                scheme,
            )
        return [Application.model_validate(r["application"]) for r in rows]

    results = what_if(run(load_applications()), current, proposed)
    changed = sum(r.changed for r in results)
    if as_json:
        emit_json(
            {
                "replayed": len(results),
                "changed": changed,
                "results": [
                    {
                        "application_id": r.application_id,
                        "scheme": r.scheme,
                        "outcome_before": r.outcome_before,
                        "outcome_after": r.outcome_after,
                        "total_before": r.total_before.model_dump(mode="json") if r.total_before is not None else None,
                        "total_after": r.total_after.model_dump(mode="json") if r.total_after is not None else None,
                        "criteria_changed": [
                            {"criterion": c.criterion, "before": c.before, "after": c.after} for c in r.criteria_changed
                        ],
                    }
                    for r in results
                    if r.changed or show_unchanged
                ],
            }
        )
        return
    table = Table(title="what-if: stored applications under the proposed parameters")
    for column in ("application", "scheme", "outcome now", "outcome then", "total now", "total then", "criteria changed"):
        table.add_column(column)
    for r in results:
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
    console = Console()
    console.print(table)
    console.print(f"what-if: {len(results)} applications replayed, {changed} would change, nothing published")


def _show_redecided(effect: Effect, dry_run: bool) -> None:
    table = Table(title="re-decide: pending applications under the parameters now in force")
    for column in ("application", "scheme", "outcome now", "outcome then", "revision", "criteria still to decide"):
        table.add_column(column)
    for row in effect.detail:
        table.add_row(
            row["application_id"],
            row["scheme"],
            row["outcome_before"],
            row["outcome_after"],
            str(row["revision"]) if row["changed"] else "-",
            ", ".join(row["not_decidable"]) or "-",
        )
    Console().print(table)


@app.command("re-decide")
def redecide_command(
    pending: Annotated[bool, typer.Option("--pending", help="The applications waiting for review (required).")] = False,
    scheme: Annotated[str | None, typer.Option(help="Only this scheme's applications.")] = None,
    dry_run: DryRunOption = False,
    yes: YesOption = False,
    as_json: JsonOption = False,
) -> None:
    """Re-decide pending applications with the parameters now in force; publish revisions that change the outcome."""
    if not pending:
        raise CliError("say which applications: --pending (those waiting for review)")
    config = settings(EligibilitySettings)
    parameters = _load(config.eligibility_operator_parameters_file)

    async def work(uow: UnitOfWork) -> Effect:
        rows = []
        for waiting in await repo_of(uow).pending(scheme):
            revised = await redecide(uow, waiting.decision.application_id, parameters)
            if revised is None:
                continue
            rows.append(
                {
                    "application_id": waiting.decision.application_id,
                    "scheme": waiting.decision.scheme,
                    "outcome_before": revised.previous.outcome,
                    "outcome_after": revised.decision.outcome,
                    "changed": revised.published,
                    "revision": revised.decision.revision,
                    "not_decidable": [c.criterion for c in revised.decision.criteria if c.outcome == "not_decidable"],
                }
            )
        changed = [r for r in rows if r["changed"]]
        listed = ", ".join(f"{r['application_id']} -> {r['outcome_after']}" for r in changed) or "none"
        return Effect(
            "revised" if changed else "unchanged",
            f"{len(rows)} pending replayed, {len(changed)} revised ({listed})",
            {
                "replayed": len(rows),
                "revised": [
                    {k: r[k] for k in ("application_id", "outcome_before", "outcome_after", "revision")} for r in changed
                ],
            },
            rows,
        )

    change(
        config=config,
        service="eligibility",
        command="calls re-decide",
        arguments={"pending": pending, "scheme": scheme},
        work=work,
        dry_run=dry_run,
        yes=yes,
        as_json=as_json,
        show=_show_redecided,
    )


if __name__ == "__main__":
    from services.cli import main

    main(["calls", *sys.argv[1:]])
