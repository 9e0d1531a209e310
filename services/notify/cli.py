"""Operator commands for notify's dead letters (messages parked after their last failed attempt).

    python -m services.notify.cli dead-letters list [--channel email|webhook] [--limit N] [--json]
    python -m services.notify.cli dead-letters redeliver <notification_id> [<notification_id> ...]

`redeliver` puts a parked message back in the queue with fresh attempts; the running notify service
sends it (rendered and signed anew) and publishes NotificationSent once it is delivered. Output
names recipients by `recipient_ref` only, never by address.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import uuid
from typing import Any

import asyncpg

from services.notify import repository
from services.notify.settings import NotifySettings
from shared.settings import database_ssl


async def _list(dsn: str, channel: str | None, limit: int, as_json: bool) -> int:
    conn = await asyncpg.connect(dsn, ssl=database_ssl(NotifySettings()))
    try:
        rows = await repository.dead_letters(conn, channel, limit)
    finally:
        await conn.close()
    if as_json:
        print(json.dumps([_plain(r) for r in rows], indent=2, default=str))
        return 0
    if not rows:
        print("no dead letters")
        return 0
    for r in rows:
        target = r["subscription_id"] or r["recipient_ref"]
        print(
            f"{r['notification_id']}  {r['channel']:<7} {target:<32} {r['template']:<44} "
            f"app={r['application_id'] or '-'} attempts={r['attempts']} redeliveries={r['redeliveries']} "
            f"dead_at={r['dead_at']:%Y-%m-%dT%H:%M:%SZ}  {r['last_error'] or ''}"
        )
    return 0


async def _redeliver(dsn: str, ids: list[str]) -> int:
    conn = await asyncpg.connect(dsn, ssl=database_ssl(NotifySettings()))
    failures = 0
    try:
        for raw in ids:
            try:
                notification_id = uuid.UUID(raw)
            except ValueError:
                print(f"{raw}: not a notification id", file=sys.stderr)
                failures += 1
                continue
            if await repository.redeliver(conn, notification_id):
                print(f"{notification_id}: queued for redelivery")
            else:
                print(f"{notification_id}: not a dead letter (unknown, scheduled or already sent)", file=sys.stderr)
                failures += 1
    finally:
        await conn.close()
    return 1 if failures else 0


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    return {k: str(v) if isinstance(v, uuid.UUID) else v for k, v in row.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.notify.cli", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="group", required=True)
    dead = commands.add_parser("dead-letters", help="list and redeliver parked messages")
    actions = dead.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="list parked messages, newest first")
    listing.add_argument("--channel", choices=["email", "webhook"])
    listing.add_argument("--limit", type=int, default=100)
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    again = actions.add_parser("redeliver", help="queue parked messages for delivery again")
    again.add_argument("ids", nargs="+", metavar="notification_id")
    args = parser.parse_args(argv)
    dsn = NotifySettings().database_url.get_secret_value()
    if args.action == "list":
        return asyncio.run(_list(dsn, args.channel, args.limit, args.json))
    return asyncio.run(_redeliver(dsn, args.ids))


if __name__ == "__main__":
    sys.exit(main())
