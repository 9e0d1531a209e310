"""In-memory fakes of notify's repository, unit of work and mailer, for pure handler tests (the
real-PostgreSQL tests keep the locks, the concurrency and the delivery; cosmicpython's FakeUnitOfWork)."""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from services.notify.mail import Composed
from services.notify.render import StoredDecision
from services.notify.repository import GrantRecipient, Scheduled, StoredDecisionRow, decision_json, read_decision
from shared.delivery import OutboxRow, UnitOfWork
from shared.events import Recipient


class FakeNotifyRepository:
    """The rows of notify.notifications, notify.decisions and notify.grant_recipients, with the same
    rules as the SQL."""

    def __init__(self) -> None:
        self.notifications: dict[uuid.UUID, dict[str, Any]] = {}
        self.decisions_by_app: dict[str, str] = {}  # application id -> the stored JSON, as the table has it
        self.recipients_by_grant: dict[str, GrantRecipient] = {}
        self.locked: set[uuid.UUID] = set()
        self.now = datetime.now(UTC)  # the dispatcher compares scheduled_at with the clock

    async def schedule(self, messages: Sequence[Scheduled]) -> int:
        keys = {row["dedupe_key"] for row in self.notifications.values()}
        new = 0
        for m in messages:
            key = m.planned.dedupe_key(m.source_event_id)
            if key in keys:
                continue
            keys.add(key)
            nid = uuid.uuid4()
            self.notifications[nid] = {
                "notification_id": nid,
                "dedupe_key": key,
                "source_event_id": m.source_event_id,
                "source_event_type": m.source_event_type,
                "application_id": m.planned.application_id,
                "channel": m.planned.channel,
                "recipient_ref": m.planned.recipient_ref,
                "template": m.planned.template,
                "language": m.planned.language,
                "payload": json.loads(m.payload),
                "subscription_id": m.planned.subscription_id,
                "status": "scheduled",
                "attempts": 0,
                "scheduled_at": self.now,
                "next_attempt_at": self.now + timedelta(seconds=m.delay_s),
                "sent_at": None,
                "last_error": None,
            }
            new += 1
        return new

    async def store_decisions(self, decisions: Sequence[StoredDecisionRow]) -> None:
        for d in decisions:
            self.decisions_by_app.setdefault(d.application_id, decision_json(d.decision))

    async def decisions(self, application_ids: Sequence[str]) -> dict[str, StoredDecision]:
        return {a: read_decision(self.decisions_by_app[a]) for a in application_ids if a in self.decisions_by_app}

    async def store_recipients(self, recipients: Sequence[GrantRecipient]) -> None:
        for r in recipients:
            self.recipients_by_grant.setdefault(r.grant_id, r)

    async def recipients(self, grants: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Recipient]:
        kept = self.recipients_by_grant
        return {(g, a): kept[g].recipient for g, a in grants if g in kept and kept[g].application_id == a}

    async def forget_recipients(self, programme: str, before_year: int) -> int:
        gone = [g for g, r in self.recipients_by_grant.items() if r.programme == programme and r.last_budget_year < before_year]
        for g in gone:
            del self.recipients_by_grant[g]
        return len(gone)

    def _waits(self, row: dict[str, Any], decision_wait_s: float) -> bool:
        if row["channel"] != "email" or row["scheduled_at"] <= self.now - timedelta(seconds=decision_wait_s):
            return False
        if row["template"].startswith("grant."):
            return row["application_id"] is not None and row["application_id"] not in self.decisions_by_app
        if row["template"].startswith("release."):
            kept = self.recipients_by_grant.get(row["payload"]["event"]["grant_id"])
            return kept is None or kept.application_id != row["application_id"]
        return False

    async def claim_due(self, limit: int, decision_wait_s: float) -> list[dict[str, Any]]:
        due = sorted(
            (
                r
                for r in self.notifications.values()
                if r["status"] == "scheduled"
                and r["next_attempt_at"] <= self.now
                and r["notification_id"] not in self.locked
                and not self._waits(r, decision_wait_s)
            ),
            key=lambda r: r["next_attempt_at"],
        )[:limit]
        self.locked |= {r["notification_id"] for r in due}
        return [dict(r) for r in due]

    async def mark_sent(self, notification_ids: Sequence[uuid.UUID], at: datetime) -> None:
        for nid in notification_ids:
            row = self.notifications[nid]
            row.update(status="sent", sent_at=at, attempts=row["attempts"] + 1, payload=None)

    async def mark_failed_attempt(self, notification_id: uuid.UUID, error: str, retry_in_s: float, dead: bool) -> None:
        row = self.notifications[notification_id]
        row.update(
            attempts=row["attempts"] + 1,
            last_error=error[:500],
            next_attempt_at=self.now + timedelta(seconds=retry_in_s),
            status="dead" if dead else row["status"],
        )

    def of(self, status: str) -> list[dict[str, Any]]:
        return [r for r in self.notifications.values() if r["status"] == status]


class FakeTransactions:
    """`runtime.transaction` for a fake repository: each transaction's outbox rows land in `outbox`
    once it ends without an error (a failed one leaves nothing, like a rollback of its rows' locks)."""

    def __init__(self, repo: FakeNotifyRepository) -> None:
        self.repo = repo
        self.outbox: list[OutboxRow] = []

    def unit_of_work(self) -> UnitOfWork[Any]:
        # (ignore below) a pure test: no connection, the fake repositories do the work
        return UnitOfWork(conn=None, schema="notify", source="/clustergrants/notify", repo=self.repo, buffered=True)  # type: ignore[arg-type]

    @contextlib.asynccontextmanager
    async def __call__(self) -> AsyncIterator[UnitOfWork[Any]]:
        uow = self.unit_of_work()
        try:
            yield uow
        finally:
            self.repo.locked.clear()
        self.outbox += uow.outbox


class FakeMailer:
    """Keeps what it was given; `fail` makes the next N sends raise."""

    def __init__(self) -> None:
        self.sent: list[Composed] = []
        self.fail = 0
        self.closed = 0

    async def send(self, message: Composed) -> None:
        if self.fail:
            self.fail -= 1
            raise ConnectionRefusedError("SMTP server refused the connection")
        self.sent.append(message)

    async def close(self) -> None:
        self.closed += 1
