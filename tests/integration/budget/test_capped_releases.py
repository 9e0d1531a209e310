"""The GrantReleased a year's opening writes for every grant it capped: PostgreSQL builds them in one
statement (services/budget/repository.py CAPPED_RELEASES), so these tests hold its output to the
model and to the headers `UnitOfWork.publish` would have written for the same events."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import asyncpg
import pytest
from aiokafka import ConsumerRecord

from services.budget import handlers
from services.budget.repository import LedgerRepository, _header_pieces
from shared.cloudevents import attributes_for, to_headers
from shared.delivery import HeaderTemplate, UnitOfWork
from shared.events import CeilingReset, GrantReleased, ReleasedAmount
from shared.money import Money
from shared.records import Delivery, Position
from shared.topics import Topic
from shared.tracing import traceparent_headers
from tests.integration.budget.conftest import Ledger
from tests.unit.budget.builders import config, decided, grant, programme_with_pots

pytestmark = pytest.mark.integration

PACT = "vlaio.cluster-pact"  # the seed scheme whose grants are conditional (Hermes)
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def reset_delivery(event: CeilingReset, correlation_id: str) -> Delivery[CeilingReset]:
    attributes = attributes_for(event, source="/clustergrants/budget", correlation_id=correlation_id)
    record = ConsumerRecord("t", 0, 7, 0, 0, None, b"", None, 0, 0, (("traceparent", TRACEPARENT.encode()),))
    return Delivery(event, attributes, Position("t", 0, 7), record)


async def open_year(
    ledger: Ledger, programme: str, year: int, maximum: int, correlation_id: str | None
) -> tuple[Delivery[CeilingReset] | None, handlers.ResetOutcome]:
    """Open `year` as the consumer does (a consumed CeilingReset with `correlation_id`), or, with None,
    as a command's unit of work does (no cause: each event its own correlation)."""
    event = CeilingReset(
        reset_id=f"{programme}/{year}",
        programme=programme,
        budget_year=year,
        opened_at=datetime.now(UTC),
        yearly_maximum=Money(amount_minor=maximum, currency="EUR"),
    )
    delivery = reset_delivery(event, correlation_id) if correlation_id is not None else None
    async with ledger.pool.acquire() as conn, conn.transaction():
        uow = UnitOfWork(conn=conn, schema="budget", source="/clustergrants/budget", repo=LedgerRepository(conn), buffered=True)
        outcome = await handlers.on_ceiling_reset(uow, event, cause=str(uuid.uuid4()), delivery=delivery)
        await uow.flush()
    return delivery, outcome


async def released_rows(pool: asyncpg.Pool, programme: str) -> list[asyncpg.Record]:
    return await pool.fetch(
        """SELECT event_id::text, topic, key, headers, payload FROM budget.outbox
           WHERE headers @> '[["ce_type", "org.clustergrants.grant.released.v1"]]'::jsonb
             AND convert_from(payload, 'UTF8')::jsonb ->> 'programme' = $1
           ORDER BY id""",
        programme,
    )


@pytest.mark.parametrize("correlation_id", [None, 'agency "batch" 7 / é'])
async def test_each_capped_grant_gets_the_event_and_headers_python_would_have_written(
    ledger: Ledger, programme: str, correlation_id: str | None
) -> None:
    shares = [("hermes", 1, 1)]  # a conditional grant draws on one fund (budget.conditional_single_fund_only)
    cfg = config(programme_with_pots(programme, {"hermes": 10**12}, yearly_maximum_required=True))
    await ledger.load(cfg)
    over = decided(grant(programme, {2021: 400_000_00, 2022: 300_000_00}, shares=shares, conditional=True), scheme=PACT)
    last_year = decided(grant(programme, {2021: 320_000_00}, shares=shares, conditional=True), scheme=PACT)
    under = decided(grant(programme, {2021: 100_000_00, 2022: 400_000_00}, shares=shares, conditional=True), scheme=PACT)
    for d in (over, last_year, under):
        assert await ledger.decide(d, cfg) == "committed"
    grant_ids = {
        r["application_id"]: r["grant_id"]
        for r in await ledger.pool.fetch(
            "SELECT application_id, grant_id::text FROM budget.grants WHERE programme = $1", programme
        )
    }

    # The yearly maximum: 150,000.00.
    delivery, outcome = await open_year(ledger, programme, 2021, 150_000_00, correlation_id)
    assert outcome.capped == 2

    rows = await released_rows(ledger.pool, programme)
    assert [r["key"] for r in rows] == sorted([over.application_id, last_year.application_id])
    events = {r["key"]: GrantReleased.model_validate_json(bytes(r["payload"])) for r in rows}  # the model accepts each
    first = events[over.application_id]
    released_at = first.released_at
    assert released_at.tzinfo is not None

    def expected(application_id: str, released: list[tuple[str, int]], remaining: list[tuple[int, int]]) -> GrantReleased:
        return GrantReleased.model_validate(
            {
                "application_id": application_id,
                "grant_id": grant_ids[application_id],
                "released_at": released_at,
                "scheme": PACT,
                "programme": programme,
                "reason": "capped",
                "released": [
                    {"budget_year": 2021, "fund": f, "amount": {"amount_minor": a, "currency": "EUR"}} for f, a in released
                ],
                "remaining": [{"budget_year": y, "amount": {"amount_minor": a, "currency": "EUR"}} for y, a in remaining],
            }
        )

    # 400,000.00 and 320,000.00 in 2021: what is over 150,000.00 returns.
    assert first == expected(over.application_id, [("hermes", 250_000_00)], [(2021, 150_000_00), (2022, 300_000_00)])
    assert events[last_year.application_id] == expected(last_year.application_id, [("hermes", 170_000_00)], [(2021, 150_000_00)])
    # The JSON is the model's own, field for field (same keys, same values, same order).
    for r in rows:
        written = json.loads(bytes(r["payload"]))
        assert list(written) == list(GrantReleased.model_fields)
        assert written == json.loads(events[r["key"]].model_dump_json())

    for r in rows:
        event_id = str(uuid.uuid3(handlers.RESET_NAMESPACE, f"{programme}/2021/{grant_ids[r['key']]}"))
        assert r["event_id"] == event_id
        assert r["topic"] == Topic.GRANT_RELEASED.value  # as write_outbox writes it
        attributes = attributes_for(
            events[r["key"]],
            source="/clustergrants/budget",
            event_id=event_id,
            correlation_id=delivery.correlation_id if delivery else None,
            causation_id=delivery.event_id if delivery else None,
        )
        trace = [["traceparent", TRACEPARENT]] if delivery else [list(h) for h in traceparent_headers()]
        want = [[n, v.decode()] for n, v in to_headers(attributes)] + trace
        headers = r["headers"]
        time = dict(headers)["ce_time"]
        assert datetime.fromisoformat(time).tzinfo is not None
        assert headers == [[n, time if n == "ce_time" else v] for n, v in want]
        assert dict(headers)["ce_correlationid"] == (correlation_id or event_id)

    # The same opening again writes nothing more; the next one's events have ids of their own.
    _, again = await open_year(ledger, programme, 2021, 150_000_00, correlation_id)
    assert again.decision == "duplicate"
    assert len(await released_rows(ledger.pool, programme)) == 2
    await open_year(ledger, programme, 2022, 150_000_00, correlation_id)
    later = await released_rows(ledger.pool, programme)
    assert [(r["key"], r["event_id"]) for r in later[2:]] == [
        (a, str(uuid.uuid3(handlers.RESET_NAMESPACE, f"{programme}/2022/{grant_ids[a]}")))
        for a in sorted([over.application_id, under.application_id])
    ]
    returned = {r["key"]: GrantReleased.model_validate_json(bytes(r["payload"])).released for r in later[2:]}
    assert returned == {
        a: [
            ReleasedAmount.model_validate(
                {"budget_year": 2022, "fund": "hermes", "amount": {"amount_minor": m, "currency": "EUR"}}
            )
        ]
        for a, m in ((over.application_id, 150_000_00), (under.application_id, 250_000_00))
    }
    assert await ledger.reconcile() == []


def test_a_header_template_is_cut_where_the_id_and_the_subject_go() -> None:
    template: HeaderTemplate = [
        ("a", "1"),
        ("ce_id", None),
        ("ce_subject", None),
        ("ce_correlationid", None),
        ("z", 'q"'),
    ]
    pieces, slots = _header_pieces(template)
    assert slots == ["id", "subject", "id"]
    filled = pieces[0] + '"I"' + pieces[1] + '"S"' + pieces[2] + '"I"' + pieces[3]
    assert json.loads(filled) == [["a", "1"], ["ce_id", "I"], ["ce_subject", "S"], ["ce_correlationid", "I"], ["z", 'q"']]
    pieces, slots = _header_pieces([*template[:3], ("ce_correlationid", "c")])
    assert slots == ["id", "subject", ""] and pieces[3] == ""
    four: HeaderTemplate = [("ce_id", None), ("x", None), ("y", None), ("ce_subject", None)]
    for wrong in (template[:2], four):
        with pytest.raises(ValueError, match="fills in"):
            _header_pieces(wrong)
