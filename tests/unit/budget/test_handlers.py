"""The budget's use cases on an in-memory ledger (tests/unit/budget/fakes.py): what a batch decides
and publishes. Locks, concurrency and delivery are proven on the real PostgreSQL
(tests/integration/budget)."""

from __future__ import annotations

import pytest

from services.budget import handlers
from services.budget.beneficiaries import LimitKey
from shared.events import GrantCommitted, GrantRefused, GrantReleased
from tests.unit.budget.builders import config, decided, grant, programme_with_pots
from tests.unit.budget.fakes import FakeLedgerRepository, FakeUnitOfWork

pytestmark = pytest.mark.unit

EUR = 100
PROGRAMME = "tfake"
CFG = config(programme_with_pots(PROGRAMME, {"agency": 1_000_000 * EUR}))


def uow() -> FakeUnitOfWork:
    return FakeUnitOfWork(FakeLedgerRepository.of(CFG))


async def test_a_batch_is_decided_in_offset_order_against_the_balances_the_earlier_ones_left() -> None:
    fake = uow()
    who = "BE-BCE_KBO-0700000005"
    batch = [
        decided(grant(PROGRAMME, {2020: 400_000 * EUR}), beneficiary=who),
        decided(grant(PROGRAMME, {2020: 400_000 * EUR}), beneficiary=who),  # cut to the cluster's 100,000 left
        decided(grant(PROGRAMME, {2020: 450_000 * EUR})),  # another cluster; the pot has 500,000 left
        decided(grant(PROGRAMME, {2020: 100_000 * EUR})),  # the pot has 50,000 left
    ]
    results = await handlers.decide_batch(fake.as_uow(), [handlers.Item(d, f"e{n}") for n, d in enumerate(batch)], CFG)
    assert results == ["committed", "committed", "committed", "refused"]
    assert fake.repo.writes == 1  # one set-based write for the whole batch
    committed = [e for e in fake.published if isinstance(e, GrantCommitted)]
    assert [c.grant.total.amount_minor for c in committed] == [400_000 * EUR, 100_000 * EUR, 450_000 * EUR]
    assert committed[1].grant.schedule[0].limited_by == "beneficiary-ceiling:vlaio.spearhead-cluster/yearly"
    [refused] = [e for e in fake.published if isinstance(e, GrantRefused)]
    assert (refused.limit, refused.available, refused.requested) == (
        f"pot:{PROGRAMME}/agency",
        batch[3].proposed_grant.total.model_copy(update={"amount_minor": 50_000 * EUR}),  # type: ignore[union-attr]  # built with a grant
        batch[3].proposed_grant.total,  # type: ignore[union-attr]  # built with a grant
    )
    assert fake.repo.pots[f"{PROGRAMME}/agency"].committed == 950_000 * EUR
    assert fake.repo.limits[LimitKey("vlaio.spearhead-cluster/yearly", who, 2020)] == ("EUR", 500_000 * EUR)


async def test_revisions_in_one_batch_and_across_batches_are_applied_once_each_in_order() -> None:
    fake = uow()
    first = decided(grant(PROGRAMME, {2021: 10_000 * EUR}))
    app = first.application_id
    revoked = decided(None, application_id=app, outcome="ineligible", revision=2)
    results = await handlers.decide_batch(
        fake.as_uow(), [handlers.Item(first, "r1"), handlers.Item(revoked, "r2"), handlers.Item(first, "r1-again")], CFG
    )
    assert results == ["committed", "revoked", "skipped"]
    [released] = [e for e in fake.published if isinstance(e, GrantReleased)]
    assert released.reason == "revoked" and [r.amount.amount_minor for r in released.released] == [10_000 * EUR]
    pot = fake.repo.pots[f"{PROGRAMME}/agency"]
    assert (pot.committed, pot.released) == (10_000 * EUR, 10_000 * EUR)
    assert fake.repo.grants[app].status == "revoked"
    # The revision applied is remembered: revision 2 again, or 1, changes nothing in a later batch.
    assert await handlers.decide_batch(fake.as_uow(), [handlers.Item(revoked, "r2b")], CFG) == ["skipped"]
    assert len(fake.published) == 2


async def test_a_grant_of_a_beneficiary_ceiling_scheme_without_a_beneficiary_is_refused() -> None:
    fake = uow()
    anonymous = decided(grant(PROGRAMME, {2020: 1_000 * EUR}))
    anonymous = anonymous.model_copy(
        update={
            "beneficiary_id": None,
            "proposed_grant": anonymous.proposed_grant.model_copy(update={"beneficiary_id": None}),  # type: ignore[union-attr]  # built with a grant
        }
    )
    assert await handlers.on_eligibility_decided(fake.as_uow(), anonymous, CFG, cause="x") == "refused"
    [refused] = fake.published
    assert isinstance(refused, GrantRefused) and refused.message_key == "budget.beneficiary_unknown"


async def test_a_reduction_gives_the_beneficiary_ceiling_its_room_back() -> None:
    fake = uow()
    who = "BE-BCE_KBO-0700000104"
    d = decided(grant(PROGRAMME, {2030: 500_000 * EUR}), beneficiary=who)
    assert await handlers.on_eligibility_decided(fake.as_uow(), d, CFG, cause="c") == "committed"
    event = await handlers.release_grant(fake.as_uow(), d.application_id, {2030: 200_000 * EUR}, cause="r")
    assert event is not None and event.reason == "reduced"
    assert fake.repo.limits[LimitKey("vlaio.spearhead-cluster/yearly", who, 2030)] == ("EUR", 200_000 * EUR)
    later = decided(grant(PROGRAMME, {2030: 400_000 * EUR}), beneficiary=who)
    assert await handlers.on_eligibility_decided(fake.as_uow(), later, CFG, cause="l") == "committed"
    committed = [e for e in fake.published if isinstance(e, GrantCommitted)]
    assert committed[-1].grant.total.amount_minor == 300_000 * EUR
