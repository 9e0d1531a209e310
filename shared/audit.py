"""The audit trail of operator commands: one append-only row per command that changed a service's
state, in the schema of that service, written in the SAME transaction as the change and as the
`AuditRecorded` event in the service's outbox. A rolled-back change leaves no record; a committed
one cannot lack it (Jems writes its audit after the commit and can lose it).

    audit_id = await record(uow, operator=..., command="budget release", arguments={...},
                            outcome="released", changes={...})

`uow` is the command's unit of work (`shared.delivery.UnitOfWork`) on the service's schema; the
table comes from `shared/migrations/001_audit.sql` (a trigger refuses UPDATE, DELETE, TRUNCATE).
"""

from __future__ import annotations

import getpass
import json
import os
import re
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import asyncpg

from shared.db import Connection
from shared.delivery import UnitOfWork
from shared.events import AuditRecorded
from shared.topics import TOPIC_SPECS, Topic

#: The services whose operator commands are audited: the producers of the audit topic.
SERVICES: tuple[str, ...] = tuple(TOPIC_SPECS[Topic.AUDIT_RECORDED].producers)

OPERATOR_ENV = "CLUSTERGRANTS_OPERATOR"
_OPERATOR = re.compile(r"^[^\x00-\x1f\x7f]{1,128}$")


class AuditNotMigrated(Exception):
    """No service schema asked for has its audit table: the database needs `clustergrants migrate`."""


class OperatorUnknown(Exception):
    """Neither CLUSTERGRANTS_OPERATOR nor the operating system names who runs the command."""


def operator_identity(environ: Mapping[str, str] | None = None) -> str:
    """Who runs the command: CLUSTERGRANTS_OPERATOR, else the operating-system user."""
    env = os.environ if environ is None else environ
    named = env.get(OPERATOR_ENV, "").strip()
    if named:
        if not _OPERATOR.match(named):
            raise OperatorUnknown(f"{OPERATOR_ENV} must be 1-128 printable characters")
        return named
    try:
        user = getpass.getuser()
    except (OSError, KeyError):  # no user name in the environment nor in the password database
        user = ""
    if not user or not _OPERATOR.match(user):
        raise OperatorUnknown(f"cannot tell who runs this command: set {OPERATOR_ENV}")
    return user


async def record(
    uow: UnitOfWork,
    *,
    operator: str,
    command: str,
    arguments: Mapping[str, Any],
    outcome: str,
    changes: Mapping[str, Any],
) -> uuid.UUID:
    """Write the audit row and its AuditRecorded into `uow` (the transaction of the change itself)."""
    if uow.schema not in SERVICES:
        raise ValueError(f"no audit trail in schema {uow.schema!r}")
    audit_id = uuid.uuid4()
    event_id = str(uuid.uuid4())
    # The JSON goes in as text so that it works whether or not the connection has a jsonb codec.
    recorded_at = await uow.conn.fetchval(
        f"""INSERT INTO {uow.schema}.audit (audit_id, operator, command, arguments, outcome, changes, event_id)
            VALUES ($1, $2, $3, $4::text::jsonb, $5, $6::text::jsonb, $7) RETURNING recorded_at""",
        audit_id,
        operator,
        command,
        json.dumps(dict(arguments), default=str),
        outcome,
        json.dumps(dict(changes), default=str),
        uuid.UUID(event_id),
    )
    await uow.publish(
        AuditRecorded(
            audit_id=audit_id,
            service=uow.schema,  # type: ignore[arg-type]  # a service's schema is its name
            recorded_at=recorded_at,
            operator=operator,
            command=command,
            arguments=json.loads(json.dumps(dict(arguments), default=str)),
            outcome=outcome,
            changes=json.loads(json.dumps(dict(changes), default=str)),
        ),
        event_id=event_id,
    )
    return audit_id


async def records(
    conn: Connection,
    services: Sequence[str] = SERVICES,
    *,
    operator: str | None = None,
    command: str | None = None,
    since: Any = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Audit rows of `services`, newest first; services whose schema is not migrated are skipped
    (AuditNotMigrated when none is)."""
    rows: list[dict[str, Any]] = []
    missing = 0
    for service in services:
        if service not in SERVICES:
            raise ValueError(f"unknown service {service!r}")
        try:
            found = await conn.fetch(
                f"""SELECT audit_id, recorded_at, operator, command, arguments::text AS arguments, outcome,
                           changes::text AS changes
                    FROM {service}.audit
                    WHERE ($1::text IS NULL OR operator = $1) AND ($2::text IS NULL OR command = $2)
                      AND ($3::timestamptz IS NULL OR recorded_at >= $3)
                    ORDER BY recorded_at DESC, audit_id LIMIT $4""",
                operator,
                command,
                since,
                limit,
            )
        except (asyncpg.UndefinedTableError, asyncpg.InvalidSchemaNameError):
            missing += 1
            continue
        rows += [
            {
                "service": service,
                "audit_id": str(r["audit_id"]),
                "recorded_at": r["recorded_at"],
                "operator": r["operator"],
                "command": r["command"],
                "arguments": json.loads(r["arguments"]),
                "outcome": r["outcome"],
                "changes": json.loads(r["changes"]),
            }
            for r in found
        ]
    if services and missing == len(services):
        raise AuditNotMigrated(f"no audit table in schema(s) {', '.join(services)}: run `clustergrants migrate`")
    rows.sort(key=lambda r: (r["recorded_at"], r["audit_id"]), reverse=True)
    return rows[:limit]
