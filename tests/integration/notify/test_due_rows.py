"""The dispatcher's typed row (DueNotification) names exactly the columns of notify.notifications; which
rows the claim hands out."""

from __future__ import annotations

import json
import uuid
from typing import get_type_hints

import asyncpg
import pytest

from services.notify.domain import Planned
from services.notify.render import StoredDecision
from services.notify.repository import DueNotification, GrantRecipient, NotifyRepository, Scheduled, StoredDecisionRow
from shared.events import Contact, Recipient

pytestmark = pytest.mark.integration


async def test_due_notification_has_every_column_of_the_table_and_no_other(pool: asyncpg.Pool) -> None:
    columns = {
        r["column_name"]
        for r in await pool.fetch(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = 'notify' AND table_name = 'notifications'"
        )
    }
    assert columns, "notify.notifications has no columns: not migrated?"
    assert set(get_type_hints(DueNotification)) == columns


async def test_a_grant_email_is_claimed_once_its_decision_is_committed_or_its_wait_is_over(pool: asyncpg.Pool) -> None:
    """The claim itself decides (one statement, one snapshot) whether a grant e-mail's decision is there:
    nothing is claimed and put back while it is missing, so no decision committed meanwhile is missed."""
    run = uuid.uuid4().hex[:8]
    app, other = f"WAIT-{run}", f"WAIT-{run}-other"

    def scheduled(event_id: str, template: str, application_id: str) -> Scheduled:
        planned = Planned("email", f"email:{event_id}", template, "en", application_id)
        return Scheduled(event_id, "org.clustergrants.test.v1", planned, '{"event": {}, "ce": {}}')

    async def claimed(wait_s: float) -> set[str]:
        async with pool.acquire() as conn, conn.transaction():
            rows = await NotifyRepository(conn).claim_due(1000, wait_s)
            return {r["source_event_id"] for r in rows if r["application_id"] in (app, other)}

    async with pool.acquire() as conn:
        repo = NotifyRepository(conn)
        await repo.schedule(
            [
                scheduled(f"{run}-grant", "grant.committed", app),
                scheduled(f"{run}-rejected", "eligibility.ineligible", other),
            ]
        )
    assert await claimed(30) == {f"{run}-rejected"}  # the grant e-mail waits, the other goes
    assert await claimed(0) == {f"{run}-grant", f"{run}-rejected"}  # its wait is over: it goes without

    async with pool.acquire() as conn, conn.transaction():
        await NotifyRepository(conn).store_decisions(
            [StoredDecisionRow(app, f"{run}-decided", StoredDecision([], "Europe/Brussels"))]
        )
        assert await claimed(30) == {f"{run}-rejected"}  # not committed yet: still waiting
    assert await claimed(30) == {f"{run}-grant", f"{run}-rejected"}


async def test_a_release_email_is_claimed_once_its_grants_recipient_is_committed_and_recipients_expire(
    pool: asyncpg.Pool,
) -> None:
    """A release e-mail waits in the claim's statement for the recipient notify keeps from the grant's
    GrantCommitted; a CeilingReset's purge deletes the recipients of its programme's ended grants only."""
    run = uuid.uuid4().hex[:8]
    app, grant = f"REL-{run}", f"G-{run}"
    programme, other_programme = f"p{run}", f"q{run}"
    planned = Planned("email", f"grant:{grant}", "release.reduced", "en", app)
    payload = json.dumps({"event": {"grant_id": grant}, "ce": {}})

    async def claimed(wait_s: float, application_id: str = app) -> bool:
        async with pool.acquire() as conn, conn.transaction():
            rows = await NotifyRepository(conn).claim_due(1000, wait_s)
            return any(r["application_id"] == application_id for r in rows)

    def kept(grant_id: str, prog: str, last_year: int) -> GrantRecipient:
        who = Recipient(language="nb", contact=Contact(name="Kari Ås", email=f"kari.{run}@example.no"), organisation_name="K")
        return GrantRecipient(grant_id, app if grant_id == grant else f"app-{grant_id}", prog, last_year, who)

    # A release naming this grant for another application: the grant's recipient is not its to use.
    stranger = Planned("email", f"grant:{grant}", "release.reduced", "en", f"{app}-other")
    async with pool.acquire() as conn:
        await NotifyRepository(conn).schedule(
            [
                Scheduled(f"{run}-released", "org.clustergrants.grant.released.v1", planned, payload),
                Scheduled(f"{run}-stranger", "org.clustergrants.grant.released.v1", stranger, payload),
            ]
        )
    assert not await claimed(30)  # no recipient yet: it waits
    assert await claimed(0)  # its wait is over: claimed (the dispatcher then parks it)
    async with pool.acquire() as conn, conn.transaction():
        repo = NotifyRepository(conn)
        await repo.store_recipients([kept(grant, programme, 2021), kept(f"{grant}-old", programme, 2020)])
        await repo.store_recipients([kept(f"{grant}-q", other_programme, 2020)])
        assert not await claimed(30)  # not committed yet: still waiting
    assert await claimed(30)
    assert not await claimed(30, f"{app}-other")  # still waiting: never told another application's recipient

    async with pool.acquire() as conn:
        repo = NotifyRepository(conn)
        found = await repo.recipients([(grant, app), (f"{grant}-q", f"app-{grant}-q"), (f"{grant}-missing", app)])
        assert sorted(found) == [(grant, app), (f"{grant}-q", f"app-{grant}-q")]
        assert await repo.recipients([(f"{grant}-q", app)]) == {}  # a grant is found for its own application only
        assert found[(grant, app)].contact.name == "Kari Ås" and found[(grant, app)].language == "nb"  # read back as stored
        assert await repo.forget_recipients(programme, 2021) == 1  # ended in 2020: no later year to change
        left = await repo.recipients([(grant, app), (f"{grant}-old", f"app-{grant}-old"), (f"{grant}-q", f"app-{grant}-q")])
        assert sorted(left) == [(grant, app), (f"{grant}-q", f"app-{grant}-q")]
        assert await repo.forget_recipients(programme, 2021) == 0
