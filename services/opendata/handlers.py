"""The open-data read model: a projection of the events agency systems receive too.

    ApplicationReceived  -> opendata.applications   (the applicant organisation, title, summary)
    GrantCommitted       -> opendata.grants + the committed amount per budget year
    GrantReleased        -> opendata.releases + the returned amount per budget year

What a grant holds now is its committed schedule minus every release, year by year; the budget
publishes a GrantReleased for every change of a commitment (withdrawal, reduction, revocation,
discontinuation, and a conditional grant capped at a year's opening), so the projection holds what
the ledger holds, to the cent (tests/integration/opendata compares them). Each event is applied once
(the runtime's inbox); amounts only add up, so a release projected before its commitment (two
topics, no order between them) ends the same.
"""

from __future__ import annotations

from collections.abc import Sequence

from services.opendata.export import scheduled_amounts
from services.opendata.repository import CommittedRow, OpenDataRepository, ReceivedRow, ReleaseRow
from shared.delivery import UnitOfWork
from shared.events import ApplicationReceived, Event, GrantCommitted, GrantReleased
from shared.records import Delivery


def received_row(event: ApplicationReceived) -> ReceivedRow:
    application = event.application
    return ReceivedRow(
        application.application_id,
        application.applicant.model_dump_json(),  # the organisation; the contact person is not kept
        application.title,
        application.summary,
        event.received_at,
    )


def committed_row(event: GrantCommitted) -> CommittedRow:
    years = scheduled_amounts(event.grant)
    return CommittedRow(
        event.grant_id,
        event.application_id,
        event.scheme,
        event.grant.programme,
        event.grant.model_dump_json(),
        event.committed_at,
        tuple(sorted(years.items())),
    )


def release_rows(event: GrantReleased, event_id: str) -> tuple[ReleaseRow, list[tuple[str, str, int, int]]]:
    years = [(event_id, event.grant_id, r.budget_year, r.amount.amount_minor) for r in event.released]
    return ReleaseRow(event_id, event.grant_id, event.reason, event.released_at), years


async def project(repo: OpenDataRepository, events: Sequence[tuple[str, Event]]) -> None:
    """Apply a batch of (event id, event), set-based: one statement per table and kind of event."""
    received: list[ReceivedRow] = []
    committed: list[CommittedRow] = []
    releases: list[ReleaseRow] = []
    released_years: list[tuple[str, str, int, int]] = []
    seen: set[str] = set()
    for event_id, event in events:
        if event_id in seen:
            continue  # the same event twice in one batch: once (the inbox drops it across batches)
        seen.add(event_id)
        if isinstance(event, ApplicationReceived):
            received.append(received_row(event))
        elif isinstance(event, GrantCommitted):
            committed.append(committed_row(event))
        elif isinstance(event, GrantReleased):
            release, years = release_rows(event, event_id)
            releases.append(release)
            released_years += years
        else:
            raise TypeError(f"open data does not project {type(event).__name__}")
    await repo.add_applications(received)
    await repo.add_grants(committed)
    await repo.add_releases(releases, released_years)


async def on_events(uow: UnitOfWork[OpenDataRepository], deliveries: Sequence[Delivery[Event]]) -> None:
    await project(uow.repo, [(d.event_id, d.event) for d in deliveries])
