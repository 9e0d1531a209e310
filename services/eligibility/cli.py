"""`clustergrants calls ...`: the eligibility service's operator commands (`python -m
services.eligibility.cli ...` runs the same commands).

    clustergrants calls close-call s3.platform s3-2018 [--cap 25] [--dry-run] [--yes] [--json]
    clustergrants calls what-if --proposed-operator-file new.yaml [--scheme nic.cluster] [--json]
    clustergrants calls re-decide --pending [--scheme nic.cluster] [--dry-run] [--yes] [--json]
    clustergrants calls open-call nic.cluster --level arena --year 2027 [--dry-run] [--yes] [--json]
    clustergrants calls evaluate APP --year 2027 --in-line-with-strategy|--not-in-line-with-strategy
                                 --meets-requirements|--does-not-meet-requirements --reason ... --officer k-1
    clustergrants calls record-selection s3.platform ORG_ID --reason ... --document ... --officer k-1 [--yes]

`close-call` selects who gets money: it shows the ranking it will publish (`--dry-run` stops there),
asks for confirmation on a terminal (`--yes` for scripts), and writes the closed call, CallClosed in
the eligibility outbox and its audit record (`eligibility.audit`, AuditRecorded) in one transaction.
`what-if` only reads. `re-decide --pending` replays the applications waiting for review through the
parameters now in force (a case handler's findings kept) and publishes the next revision of each
decision whose outcome changes, with one audit record; `--dry-run` prints the table and changes nothing.
`open-call` publishes Norway's yearly call of a level (CallOpened) with the deadline and announcement
day the operator set for that year (`nic.application_deadline`, `nic.announcement_on`); `evaluate`
records a case handler's annual evaluation of a funded Norwegian cluster (ClusterEvaluated: the
budget releases the later slices of one that does not continue, notify tells it). Both once per
call or cluster and year, audited. `record-selection` records an organisation selected for S3's
platform outside the project (S3 step 2 checks the project's own step-1 selection, never the portal's
claim alone): later step-2 applications of that beneficiary pass the selection criterion.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from pydantic import TypeAdapter, ValidationError
from rich.console import Console
from rich.table import Table

from services.cli_common import (
    CliError,
    DryRunOption,
    Effect,
    JsonOption,
    YesOption,
    change,
    database,
    emit_json,
    one_line,
    operator_identity,
    run,
    settings,
)
from services.eligibility.calls import CallError, close_call
from services.eligibility.handlers import redecide, repo_of
from services.eligibility.parameters import ParameterError, ParameterStore
from services.eligibility.schemes.nic_cluster.cycle import CycleError, evaluation, yearly_call
from services.eligibility.schemes.s3_financing.selection import STEP_1
from services.eligibility.settings import EligibilitySettings
from services.eligibility.whatif import what_if
from shared.delivery import UnitOfWork
from shared.events import Application, CallClosed, OfficerId, OrgId

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


@app.command("record-selection")
def record_selection_command(
    scheme: Annotated[str, typer.Argument(help="The step-1 scheme: s3.platform.")],
    beneficiary_id: Annotated[str, typer.Argument(help="The organisation's register identity, e.g. SE-ON-5560912148.")],
    reason: Annotated[str, typer.Option(help="Why, in a sentence.")],
    document: Annotated[str, typer.Option(help="Reference of the selection decision seen.")],
    officer: Annotated[str, typer.Option(envvar="CLUSTERGRANTS_OFFICER", help="Your opaque officer reference.")],
    dry_run: DryRunOption = False,
    yes: YesOption = False,
    as_json: JsonOption = False,
) -> None:
    """Record an organisation selected for S3's platform outside the project (audited)."""
    if scheme != STEP_1:
        raise CliError(f"outside selections are recorded for {STEP_1} only")
    try:
        TypeAdapter(OrgId).validate_python(beneficiary_id)
        TypeAdapter(OfficerId).validate_python(officer)
    except ValidationError:
        raise CliError("give a register identity such as SE-ON-5560912148 and an opaque officer reference") from None
    config = settings(EligibilitySettings)

    async def work(uow: UnitOfWork) -> Effect:
        if not await repo_of(uow).record_outside_selection(scheme, beneficiary_id, officer, reason, document):
            return Effect("unchanged", f"{beneficiary_id} was recorded as selected for {scheme} before")
        return Effect(
            "recorded",
            f"{beneficiary_id} recorded as selected for {scheme} outside the project by officer:{officer}",
            {"scheme": scheme, "beneficiary_id": beneficiary_id, "officer": officer, "document": document},
        )

    change(
        config=config,
        service="eligibility",
        command="calls record-selection",
        arguments={"scheme": scheme, "beneficiary_id": beneficiary_id, "officer": officer, "document": document},
        work=work,
        dry_run=dry_run,
        yes=yes,
        as_json=as_json,
    )


@app.command("open-call")
def open_call_command(
    scheme: Annotated[str, typer.Argument(help="nic.cluster (the scheme with a yearly call).")],
    level: Annotated[str, typer.Option(help="arena, arena-pro or gce.")],
    year: Annotated[int, typer.Option(min=2000, max=2100, help="The call's year.")],
    dry_run: DryRunOption = False,
    yes: YesOption = False,
    as_json: JsonOption = False,
) -> None:
    """Open the year's call of a level: CallOpened with the operator's deadline and announcement day."""
    if scheme != "nic.cluster":
        raise CliError(f"{scheme} has no yearly call here; nic.cluster has")
    config = settings(EligibilitySettings)
    parameters = _load(config.eligibility_operator_parameters_file)
    opened_by = operator_identity()

    async def work(uow: UnitOfWork) -> Effect:
        try:
            event = yearly_call(parameters, level, year, opened_by, datetime.now(UTC))
        except CycleError as error:
            raise CliError(f"refused: {error}") from None
        before = await repo_of(uow).store_call_opened(event)
        if before is not None:
            return Effect("unchanged", f"call {before.call_id} was opened before (deadline {before.deadline.isoformat()})")
        await uow.publish(event)
        return Effect(
            "opened",
            f"call {event.call_id} opened: deadline {event.deadline.isoformat()}, announcement {event.announcement_on}; "
            "CallOpened is in the eligibility outbox",
            event.model_dump(mode="json"),
        )

    change(
        config=config,
        service="eligibility",
        command="calls open-call",
        arguments={"scheme": scheme, "level": level, "year": year},
        work=work,
        dry_run=dry_run,
        yes=yes,
        as_json=as_json,
    )


@app.command("evaluate")
def evaluate_command(
    application_id: Annotated[str, typer.Argument(help="The application of the cluster's grant.")],
    year: Annotated[int, typer.Option(min=2000, max=2100, help="The year evaluated.")],
    in_line_with_strategy: Annotated[
        bool, typer.Option("--in-line-with-strategy/--not-in-line-with-strategy", help="Develops in line with its strategy.")
    ],
    meets_requirements: Annotated[
        bool,
        typer.Option("--meets-requirements/--does-not-meet-requirements", help="Still meets the programme's requirements."),
    ],
    reason: Annotated[str, typer.Option(help="Why, in a sentence.")],
    officer: Annotated[str, typer.Option(envvar="CLUSTERGRANTS_OFFICER", help="Your opaque officer reference.")],
    document: Annotated[str | None, typer.Option(help="Reference of the evaluation report.")] = None,
    dry_run: DryRunOption = False,
    yes: YesOption = False,
    as_json: JsonOption = False,
) -> None:
    """Record the annual evaluation of a funded Norwegian cluster (ClusterEvaluated), once per year."""
    config = settings(EligibilitySettings)

    async def work(uow: UnitOfWork) -> Effect:
        latest = await repo_of(uow).latest(application_id, for_update=True)
        if latest is None:
            raise CliError(f"{application_id} has not been decided")
        try:
            event = evaluation(
                latest.decision,
                year,
                in_line_with_strategy=in_line_with_strategy,
                meets_requirements=meets_requirements,
                reason=reason,
                document_reference=document,
                officer=officer,
                now=datetime.now(UTC),
            )
        except (CycleError, ValueError) as error:
            raise CliError(f"refused: {one_line(str(error))}") from None
        before = await repo_of(uow).store_evaluation(event)
        if before is not None:
            verdict = "continues" if before.continues else "does not continue"
            return Effect("unchanged", f"{before.evaluation_id} was evaluated before ({verdict}, {before.decided_by})")
        await uow.publish(event)
        verdict = "continues" if event.continues else "does not continue: the budget releases its later slices"
        return Effect(
            "evaluated",
            f"{event.evaluation_id}: {verdict}; ClusterEvaluated is in the eligibility outbox",
            {k: v for k, v in event.model_dump(mode="json").items() if k != "recipient"},
        )

    change(
        config=config,
        service="eligibility",
        command="calls evaluate",
        arguments={
            "application_id": application_id,
            "year": year,
            "in_line_with_strategy": in_line_with_strategy,
            "meets_requirements": meets_requirements,
            "officer": officer,
            "document": document,
        },
        work=work,
        dry_run=dry_run,
        yes=yes,
        as_json=as_json,
    )


if __name__ == "__main__":
    from services.cli import main

    main(["calls", *sys.argv[1:]])
