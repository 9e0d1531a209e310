"""`clustergrants notify ...`: notify's dead letters, messages parked after their last failed
attempt (`python -m services.notify.cli ...` runs the same commands).

    clustergrants notify dead-letters list [--channel email|webhook] [--limit N] [--json]
    clustergrants notify dead-letters redeliver NOTIFICATION_ID... [--dry-run] [--yes] [--json]

`redeliver` puts parked messages back in the queue with fresh attempts, all or none, with its audit
record (`notify.audit`, AuditRecorded) in the same transaction; the running notify service sends
them (rendered and signed anew) and publishes NotificationSent once delivered. Output names
recipients by `recipient_ref` only, never by address.
"""

from __future__ import annotations

import sys
import uuid
from enum import StrEnum
from typing import Annotated, Any

import typer

from services.cli_common import CliError, DryRunOption, Effect, JsonOption, YesOption, change, database, emit_json, run, settings
from services.notify.repository import NotifyRepository
from services.notify.settings import NotifySettings
from shared.delivery import UnitOfWork

app: typer.Typer = typer.Typer(help="Notify: parked e-mails and webhooks.", no_args_is_help=True, pretty_exceptions_enable=False)
dead_letters = typer.Typer(help="Messages parked after their last failed attempt: list, redeliver.", no_args_is_help=True)
app.add_typer(dead_letters, name="dead-letters")


class Channel(StrEnum):
    email = "email"
    webhook = "webhook"


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    return {k: str(v) if isinstance(v, uuid.UUID) else v for k, v in row.items()}


@dead_letters.command("list")
def list_dead_letters(
    channel: Annotated[Channel | None, typer.Option(help="Only this channel.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="At most this many, newest first.")] = 100,
    as_json: JsonOption = False,
) -> None:
    """Parked messages, newest first: channel, recipient reference, template, attempts, last error."""
    config = settings(NotifySettings)

    async def read() -> list[dict[str, Any]]:
        async with database(config) as conn:
            return await NotifyRepository(conn).dead_letters(channel.value if channel else None, limit)

    rows = run(read())
    if as_json:
        emit_json([_plain(r) for r in rows])
        return
    if not rows:
        typer.echo("no dead letters")
        return
    for r in rows:
        target = r["subscription_id"] or r["recipient_ref"]
        typer.echo(
            f"{r['notification_id']}  {r['channel']:<7} {target:<32} {r['template']:<44} "
            f"app={r['application_id'] or '-'} attempts={r['attempts']} redeliveries={r['redeliveries']} "
            f"dead_at={r['dead_at']:%Y-%m-%dT%H:%M:%SZ}  {r['last_error'] or ''}"
        )


@dead_letters.command("redeliver")
def redeliver(
    ids: Annotated[list[str], typer.Argument(help="Notification ids of parked messages (from `list`).")],
    dry_run: DryRunOption = False,
    yes: YesOption = False,
    as_json: JsonOption = False,
) -> None:
    """Queue parked messages for delivery again, with fresh attempts (all of them, or none)."""
    wanted: list[uuid.UUID] = []
    for raw in ids:
        try:
            wanted.append(uuid.UUID(raw))
        except ValueError:
            raise CliError(f"{raw!r} is not a notification id (see `clustergrants notify dead-letters list`)") from None
    wanted = list(dict.fromkeys(wanted))
    config = settings(NotifySettings)

    async def work(uow: UnitOfWork) -> Effect:
        queued: list[str] = []
        refused: list[str] = []
        for notification_id in wanted:
            (queued if await NotifyRepository(uow.conn).redeliver(notification_id) else refused).append(str(notification_id))
        if refused:
            raise CliError(
                f"refused: not a dead letter (unknown, scheduled or already sent): {', '.join(refused)}; nothing changed"
            )
        return Effect("queued", f"{len(queued)} message(s) queued for redelivery: {', '.join(queued)}", {"queued": queued})

    change(
        config=config,
        service="notify",
        command="notify dead-letters redeliver",
        arguments={"ids": [str(i) for i in wanted]},
        work=work,
        dry_run=dry_run,
        yes=yes,
        as_json=as_json,
    )


if __name__ == "__main__":
    from services.cli import main

    main(["notify", *sys.argv[1:]])
