"""Ceilings per beneficiary on the real PostgreSQL (issue 11 items 2 and 5): one beneficiary's grants
add up, in turn and concurrently; VLAIO caps, S3 and TTC refuse; releases give the room back; and
the ledger follows decision revisions exactly once (issue 13 item 2)."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from datetime import UTC, datetime

import pytest

from services.budget import handlers, views
from services.budget.repository import LedgerRepository
from shared.delivery import PoisonMessage, UnitOfWork
from shared.events import ClusterEvaluated, EligibilityDecided, GrantReleased
from shared.money import Money
from tests.integration.budget.conftest import Ledger
from tests.unit.budget.builders import config, decided, grant, programme_with_pots

pytestmark = pytest.mark.integration

EUR = 100
TTC_SHARES = [("erdf", 249701100, 499402200), ("co-financing", 249701100, 499402200)]


def cluster() -> str:
    return f"BE-BCE_KBO-T{secrets.token_hex(6)}"


async def test_one_cluster_applying_in_turn_is_cut_to_what_is_left_of_its_yearly_ceiling(ledger: Ledger, programme: str) -> None:
    cfg = config(programme_with_pots(programme, {"agency": 10**12}))
    await ledger.load(cfg)
    who = cluster()
    first = decided(grant(programme, {2020: 300_000 * EUR, 2021: 100_000 * EUR}), beneficiary=who)
    second = decided(grant(programme, {2020: 300_000 * EUR, 2021: 300_000 * EUR}), beneficiary=who)
    third = decided(grant(programme, {2020: 50_000 * EUR}), beneficiary=who)
    assert await ledger.decide(first, cfg) == "committed"
    assert await ledger.decide(second, cfg) == "committed"
    [committed] = await ledger.outbox("org.clustergrants.grant.committed", second.application_id)
    schedule = {s["budget_year"]: s for s in committed["grant"]["schedule"]}
    # 2020: EUR 200,000 was left of the cluster's EUR 500,000; 2021 fits whole.
    assert schedule[2020]["amount"]["amount_minor"] == 200_000 * EUR
    assert schedule[2020]["requested"]["amount_minor"] == 300_000 * EUR
    assert schedule[2020]["limited_by"] == "beneficiary-ceiling:vlaio.spearhead-cluster/yearly"
    assert schedule[2021]["amount"]["amount_minor"] == 300_000 * EUR and schedule[2021]["limited_by"] is None
    # Nothing is left of 2020: refused, naming the ceiling, what was left and what was asked.
    assert await ledger.decide(third, cfg) == "refused"
    [refusal] = await ledger.outbox("org.clustergrants.grant.refused", third.application_id)
    assert refusal["limit"] == "beneficiary-ceiling:vlaio.spearhead-cluster/yearly"
    assert refusal["message_key"] == "budget.beneficiary_ceiling_exceeded"
    assert (refusal["budget_year"], refusal["available"], refusal["requested"]) == (
        2020,
        {"amount_minor": 0, "currency": "EUR"},
        {"amount_minor": 50_000 * EUR, "currency": "EUR"},
    )
    # Another cluster is not affected.
    assert await ledger.decide(decided(grant(programme, {2020: 500_000 * EUR})), cfg) == "committed"
    pot = await ledger.pot(f"{programme}/agency")
    assert pot["committed_minor"] == (400_000 + 500_000 + 500_000) * EUR
    assert await ledger.reconcile() == []


async def test_concurrent_applications_of_one_cluster_never_take_more_than_its_ceiling(ledger: Ledger, programme: str) -> None:
    """Eight EUR 150,000 requests of one cluster for 2020 at once: EUR 500,000 in all, never more."""
    cfg = config(programme_with_pots(programme, {"agency": 10**12}))
    await ledger.load(cfg)
    who = cluster()
    decisions = [decided(grant(programme, {2020: 150_000 * EUR}), beneficiary=who) for _ in range(8)]
    results = await asyncio.gather(*(ledger.decide(d, cfg) for d in decisions))
    assert results.count("committed") == 4  # 150,000 + 150,000 + 150,000 + the 50,000 left
    assert results.count("refused") == 4
    pot = await ledger.pot(f"{programme}/agency")
    assert pot["committed_minor"] == 500_000 * EUR
    row = await ledger.pool.fetchrow(
        "SELECT used, maximum FROM budget.beneficiary_limits WHERE limit_id = $1 AND beneficiary_id = $2 AND budget_year = 2020",
        "vlaio.spearhead-cluster/yearly",
        who,
    )
    assert row is not None
    assert (row["used"], row["maximum"]) == (500_000 * EUR, 500_000 * EUR)
    async with ledger.pool.acquire() as conn:
        shown = await views.beneficiaries(conn, who)
    assert [(r["limit_id"], r["budget_year"], r["used"]) for r in shown] == [
        ("vlaio.spearhead-cluster/yearly", 2020, 500_000 * EUR),
        ("vlaio.spearhead-cluster/years", 0, 1),
    ]
    assert await ledger.reconcile() == []


async def test_years_per_network_add_up_across_grants_and_later_years_are_not_granted(ledger: Ledger, programme: str) -> None:
    cfg = config(programme_with_pots(programme, {"agency": 10**12}))
    await ledger.load(cfg)
    who = cluster()
    scheme = "vlaio.business-network"
    first = decided(grant(programme, {2020: 100_000 * EUR, 2021: 100_000 * EUR}), scheme=scheme, beneficiary=who)
    second = decided(
        grant(programme, {2021: 50_000 * EUR, 2022: 100_000 * EUR, 2023: 100_000 * EUR}), scheme=scheme, beneficiary=who
    )
    assert await ledger.decide(first, cfg) == "committed"
    assert await ledger.decide(second, cfg) == "committed"
    [committed] = await ledger.outbox("org.clustergrants.grant.committed", second.application_id)
    assert [s["budget_year"] for s in committed["grant"]["schedule"]] == [2021, 2022]  # 2021 held already, 2022 the third
    [dropped] = committed["grant"]["not_granted"]
    assert (dropped["budget_year"], dropped["amount"]["amount_minor"], dropped["limited_by"]) == (
        2023,
        0,
        "beneficiary-ceiling:vlaio.business-network/years",
    )
    third = decided(grant(programme, {2024: 10_000 * EUR}), scheme=scheme, beneficiary=who)
    assert await ledger.decide(third, cfg) == "refused"
    [refusal] = await ledger.outbox("org.clustergrants.grant.refused", third.application_id)
    assert refusal["limit"] == "beneficiary-ceiling:vlaio.business-network/years"
    assert (refusal["available_count"], refusal["requested_count"]) == (0, 1)
    assert await ledger.reconcile() == []


async def test_s3_refuses_a_request_above_what_is_left_of_the_cluster_organisations_maximum(
    ledger: Ledger, programme: str
) -> None:
    cfg = config(
        programme_with_pots(
            programme,
            {"tillvaxtverket": 10**12},
            currency="SEK",
            counts=[{"pot_id": f"{programme}/sel", "programme": programme, "instruments": ["other"], "max_count": 1}],
        )
    )
    await ledger.load(cfg)
    who = f"SE-ON-T{secrets.token_hex(5)}"

    def s3(amount: int) -> EligibilityDecided:
        return decided(
            grant(programme, {2019: amount}, currency="SEK", instrument="s3-pilot-financing", shares=[("tillvaxtverket", 1, 1)]),
            scheme="s3.financing",
            beneficiary=who,
        )

    first, second, third = s3(400_000_00), s3(300_000_00), s3(200_000_00)
    assert await ledger.decide(first, cfg) == "committed"
    assert await ledger.decide(second, cfg) == "refused"
    [refusal] = await ledger.outbox("org.clustergrants.grant.refused", second.application_id)
    assert refusal["limit"] == "beneficiary-ceiling:s3.financing/total"
    assert (refusal["available"]["amount_minor"], refusal["requested"]["amount_minor"]) == (200_000_00, 300_000_00)
    assert await ledger.decide(third, cfg) == "committed"  # exactly what is left
    assert await ledger.reconcile() == []


async def test_a_company_gets_one_ttc_voucher_even_when_it_asks_five_times_at_once(ledger: Ledger, programme: str) -> None:
    # The scheme's ceiling on a test programme's pots: the document's 35 vouchers stay for the other tests.
    cfg = config(programme_with_pots(programme, {"erdf": 10**9, "co-financing": 10**9}))
    await ledger.load(cfg)
    company = f"DE-CR-T{secrets.token_hex(5)}"

    def voucher() -> EligibilityDecided:
        return decided(
            grant(programme, {2015: 500_000}, instrument="innovation-voucher", shares=TTC_SHARES),
            scheme="ttc.innovation-voucher",
            beneficiary=company,
        )

    decisions = [voucher() for _ in range(5)]
    results = await asyncio.gather(*(ledger.decide(d, cfg) for d in decisions))
    assert results.count("committed") == 1 and results.count("refused") == 4
    ids = {d.application_id for d in decisions}
    refused = [r for r in await ledger.outbox("org.clustergrants.grant.refused") if r["application_id"] in ids]
    assert {(r["limit"], r["available_count"], r["requested_count"]) for r in refused} == {
        ("beneficiary-ceiling:ttc.innovation-voucher/per-company", 0, 1)
    }
    # A second voucher asked later: refused the same way.
    assert await ledger.decide(voucher(), cfg) == "refused"
    assert await ledger.reconcile() == []


async def test_the_operator_may_read_een_innovatievoucher_otherwise(ledger: Ledger, programme: str) -> None:
    cfg = config(
        {
            **programme_with_pots(programme, {"erdf": 10**9, "co-financing": 10**9}),
            "beneficiary_ceilings": [
                {
                    "limit_id": "ttc.innovation-voucher/per-company",
                    "scheme": "ttc.innovation-voucher",
                    "instrument": "innovation-voucher",
                    "kind": "grants",
                    "reading": "refuse",
                    "values": [{"maximum": 2}],
                    "quote": '"een innovatievoucher"',
                    "source": "test: the agency reads 'een' as the article (not a document figure)",
                }
            ],
        }
    )
    await ledger.load(cfg)
    company = f"DE-CR-T{secrets.token_hex(5)}"
    results = [
        await ledger.decide(
            decided(
                grant(programme, {2015: 500_000}, instrument="innovation-voucher", shares=TTC_SHARES),
                scheme="ttc.innovation-voucher",
                beneficiary=company,
            ),
            cfg,
        )
        for _ in range(3)
    ]
    assert results == ["committed", "committed", "refused"]


async def test_a_release_gives_the_beneficiary_its_room_back(ledger: Ledger, programme: str) -> None:
    cfg = config(programme_with_pots(programme, {"agency": 10**12}))
    await ledger.load(cfg)
    who = cluster()
    first = decided(grant(programme, {2030: 500_000 * EUR, 2031: 500_000 * EUR}), beneficiary=who)
    assert await ledger.decide(first, cfg) == "committed"
    assert await ledger.decide(decided(grant(programme, {2031: 1_000 * EUR}), beneficiary=who), cfg) == "refused"
    event = await ledger.in_uow(lambda uow: handlers.release_grant(uow, first.application_id, {2031: 400_000 * EUR}, cause="t"))
    assert event is not None
    later = decided(grant(programme, {2031: 150_000 * EUR}), beneficiary=who)
    assert await ledger.decide(later, cfg) == "committed"
    [committed] = await ledger.outbox("org.clustergrants.grant.committed", later.application_id)
    assert committed["grant"]["schedule"][0]["amount"]["amount_minor"] == 100_000 * EUR  # what the reduction returned
    assert await ledger.reconcile() == []


async def test_a_batch_decides_one_beneficiarys_grants_in_offset_order(ledger: Ledger, programme: str) -> None:
    """One batch, one transaction: the second and third of one cluster see the first's draw."""
    cfg = config(programme_with_pots(programme, {"agency": 10**12}))
    await ledger.load(cfg)
    who = cluster()
    batch = [decided(grant(programme, {2020: amount * EUR}), beneficiary=who) for amount in (300_000, 300_000, 100_000)]

    async def work(uow: UnitOfWork[LedgerRepository]) -> list[handlers.Result]:
        return await handlers.decide_batch(uow, [handlers.Item(d, f"b-{d.application_id}") for d in batch], cfg)

    assert await ledger.in_uow(work) == ["committed", "committed", "refused"]
    assert (await ledger.pot(f"{programme}/agency"))["committed_minor"] == 500_000 * EUR
    assert await ledger.reconcile() == []


# --- revisions (issue 13 item 2) ---------------------------------------------------------------------------


async def test_eligible_revised_to_ineligible_is_revoked_once_and_older_revisions_change_nothing(
    ledger: Ledger, programme: str
) -> None:
    cfg = config(programme_with_pots(programme, {"agency": 10_000_000}))
    await ledger.load(cfg)
    who = cluster()
    proposed = grant(programme, {2020: 1_000_000, 2021: 2_000_000})
    rev1 = decided(proposed, beneficiary=who)
    app = rev1.application_id
    rev2 = decided(None, application_id=app, outcome="ineligible", revision=2)
    assert await ledger.decide(rev1, cfg) == "committed"
    assert await ledger.decide(rev2, cfg, event_id=f"rev2-{app}") == "revoked"
    assert await ledger.decide(rev2, cfg, event_id=f"rev2-{app}") is None  # the same record again: the inbox
    assert await ledger.decide(rev2, cfg) == "skipped"  # the same revision under another id: nothing
    assert await ledger.decide(rev1, cfg) == "skipped"  # an older revision arriving late: nothing
    [released] = await ledger.outbox("org.clustergrants.grant.released", app)
    assert released["reason"] == "revoked"
    assert sorted((r["budget_year"], r["amount"]["amount_minor"]) for r in released["released"]) == [
        (2020, 1_000_000),
        (2021, 2_000_000),
    ]
    assert released["remaining"] == []
    pot = await ledger.pot(f"{programme}/agency")
    assert (pot["committed_minor"], pot["released_minor"]) == (3_000_000, 3_000_000)
    status = await ledger.pool.fetchval("SELECT status FROM budget.grants WHERE application_id = $1", app)
    assert status == "revoked"
    # The room the grant held of the cluster's ceiling is back.
    assert (
        await ledger.decide(decided(grant(programme, {2020: 500_000_00}), beneficiary=who), cfg) == "refused"
    )  # pot, not ceiling
    [refusal] = [r for r in await ledger.outbox("org.clustergrants.grant.refused") if r["limit"].startswith("pot:" + programme)]
    assert refusal["available"]["amount_minor"] == 10_000_000
    # Revised eligible again later: the revoked grant is not silently restored.
    rev3 = decided(proposed, application_id=app, revision=3)
    assert await ledger.decide(rev3, cfg) == "refused"
    [again] = await ledger.outbox("org.clustergrants.grant.refused", app)
    assert again["message_key"] == "budget.grant_revoked_before"
    assert len(await ledger.outbox("org.clustergrants.grant.committed", app)) == 1
    assert await ledger.reconcile() == []


async def test_revisions_out_of_order_and_a_referral_turning_eligible(ledger: Ledger, programme: str) -> None:
    cfg = config(programme_with_pots(programme, {"agency": 10_000_000}))
    await ledger.load(cfg)
    # Revision 2 (ineligible) overtakes revision 1 (eligible) across partitions: nothing is committed.
    late = decided(grant(programme, {2020: 1_000_000}))
    newer = decided(None, application_id=late.application_id, outcome="ineligible", revision=2)
    assert await ledger.decide(newer, cfg) == "skipped"
    assert await ledger.decide(late, cfg) == "skipped"
    assert await ledger.outbox("org.clustergrants.grant.committed", late.application_id) == []
    # needs_review, then a case handler's finding makes revision 2 eligible: committed once.
    referred = decided(None, outcome="needs_review")
    assert await ledger.decide(referred, cfg) == "skipped"
    found = decided(grant(programme, {2020: 1_000_000}), application_id=referred.application_id, revision=2)
    assert await ledger.decide(found, cfg) == "committed"
    assert await ledger.decide(found, cfg) == "skipped"
    # Two revisions of one application in ONE batch: applied in order, each once.
    both = decided(grant(programme, {2020: 2_000_000}))
    revoked = decided(None, application_id=both.application_id, outcome="ineligible", revision=2)

    async def work(uow: UnitOfWork[LedgerRepository]) -> list[handlers.Result]:
        items = [handlers.Item(both, f"a-{both.application_id}"), handlers.Item(revoked, f"b-{both.application_id}")]
        return await handlers.decide_batch(uow, items, cfg)

    assert await ledger.in_uow(work) == ["committed", "revoked"]
    pot = await ledger.pot(f"{programme}/agency")
    assert (pot["committed_minor"], pot["released_minor"]) == (3_000_000, 2_000_000)
    assert await ledger.reconcile() == []


# --- Norway's annual evaluation (issue 13 item 6, budget side) ----------------------------------------------


def evaluation(app: str, programme: str, who: str, year: int, continues: bool) -> ClusterEvaluated:
    base = decided(None)
    return ClusterEvaluated(
        application_id=app,
        evaluation_id=f"{app}/{year}",
        scheme="nic.cluster",
        programme=programme,
        beneficiary_id=who,
        year=year,
        in_line_with_strategy=continues,
        meets_requirements=True,
        continues=continues,
        reason="test evaluation",
        decided_by="officer:t-1",
        evaluated_at=datetime(2026, 9, 20, tzinfo=UTC),
        recipient=base.recipient,
    )


async def test_a_cluster_that_does_not_continue_has_its_later_slices_released_once(ledger: Ledger, programme: str) -> None:
    cfg = config(programme_with_pots(programme, {"innovasjon-norge": 10**12}, currency="NOK"))
    await ledger.load(cfg)
    who = f"NO-BRC-T{secrets.token_hex(5)}"
    years = {2025: 1_000_000, 2026: 2_000_000, 2027: 3_000_000}
    nok = grant(programme, years, currency="NOK", shares=[("innovasjon-norge", 1, 1)])
    d = decided(nok, scheme="nic.cluster", beneficiary=who)
    assert await ledger.decide(d, cfg) == "committed"
    app = d.application_id

    async def evaluate(event: ClusterEvaluated) -> GrantReleased | None:
        event_id = str(uuid.uuid4())
        return await ledger.in_uow(lambda uow: handlers.on_cluster_evaluated(uow, event, cause=event_id), event_id)

    assert await evaluate(evaluation(app, programme, who, 2024, True)) is None  # continues: nothing
    released = await evaluate(evaluation(app, programme, who, 2025, False))
    assert released is not None and released.reason == "not_continued"
    assert sorted((r.budget_year, r.amount.amount_minor) for r in released.released) == [(2026, 2_000_000), (2027, 3_000_000)]
    assert [(s.budget_year, s.amount.amount_minor) for s in released.remaining] == [(2025, 1_000_000)]
    assert await evaluate(evaluation(app, programme, who, 2025, False)) is None  # the same evaluation again: once
    pot = await ledger.pot(f"{programme}/innovasjon-norge")
    assert (pot["committed_minor"], pot["released_minor"]) == (6_000_000, 5_000_000)
    assert len(await ledger.outbox("org.clustergrants.grant.released", app)) == 1
    with pytest.raises(PoisonMessage):
        await evaluate(evaluation(app, "nic", who, 2026, False))  # another programme than the grant's
    assert await ledger.reconcile() == []


PACT, EARMARK = "vlaio.cluster-pact", "hermes-earmark"


def operator_ceilings() -> list[dict[str, object]]:
    """The documents set no beneficiary ceiling on the cluster pact; an operator may add these (test
    figures): a yearly and a total cap, a cap on budget years, at most two grants."""
    return [
        {"limit_id": f"test.{kind}", "scheme": PACT, "instrument": EARMARK, "kind": kind, "reading": reading,
         "values": [{"maximum": maximum}], "quote": "test figure", "source": "test figure (not a document figure)",
         **({"currency": "EUR"} if kind in ("yearly", "total") else {})}
        for kind, reading, maximum in (
            ("yearly", "cap", 400_000 * EUR), ("total", "cap", 700_000 * EUR), ("years", "cap", 2), ("grants", "refuse", 2)
        )
    ]  # fmt: skip


def pact_grant(programme: str, who: str, schedule: dict[int, int]) -> EligibilityDecided:
    proposed = grant(programme, schedule, instrument=EARMARK, shares=[("hermes", 1, 1)], conditional=True)
    return decided(proposed, scheme=PACT, beneficiary=who)


async def used_of(ledger: Ledger, who: str) -> dict[tuple[str, int], int]:
    rows = await ledger.pool.fetch(
        "SELECT limit_id, budget_year, used FROM budget.beneficiary_limits WHERE beneficiary_id = $1", who
    )
    return {(r["limit_id"], r["budget_year"]): r["used"] for r in rows}


async def test_a_year_opening_that_caps_a_conditional_grant_gives_the_beneficiary_its_room_back(
    ledger: Ledger, programme: str
) -> None:
    """What an opening's yearly maximum takes from a grant returns to the pot and to the beneficiary's
    ceilings alike, so the cluster may ask again for what it no longer holds."""
    operator = programme_with_pots(programme, {"hermes": 10**12}, yearly_maximum_required=True)
    operator["beneficiary_ceilings"] = operator_ceilings()
    cfg = config(operator)
    await ledger.load(cfg)
    who = cluster()

    first = pact_grant(programme, who, {2021: 400_000 * EUR, 2022: 300_000 * EUR})
    assert await ledger.decide(first, cfg) == "committed"
    full = {
        ("test.yearly", 2021): 400_000 * EUR,
        ("test.yearly", 2022): 300_000 * EUR,
        ("test.total", 0): 700_000 * EUR,
        ("test.years", 0): 2,
        ("test.grants", 0): 1,
    }
    assert await used_of(ledger, who) == full
    assert (
        await ledger.decide(pact_grant(programme, who, {2021: 100_000 * EUR}), cfg) == "refused"
    )  # nothing left of 2021, nor in all

    # 2021 opens with a yearly maximum of EUR 150,000: EUR 250,000 of the first grant returns.
    outcome = await ledger.reset(programme, 2021, Money(amount_minor=150_000 * EUR, currency="EUR"))
    assert outcome is not None and outcome.capped == 1
    assert await used_of(ledger, who) == {**full, ("test.yearly", 2021): 150_000 * EUR, ("test.total", 0): 450_000 * EUR}
    assert await ledger.reconcile() == []
    second = pact_grant(programme, who, {2021: 100_000 * EUR})
    assert await ledger.decide(second, cfg) == "committed"
    [committed] = await ledger.outbox("org.clustergrants.grant.committed", second.application_id)
    [year] = committed["grant"]["schedule"]
    assert (year["amount"]["amount_minor"], year["limited_by"]) == (100_000 * EUR, None)  # whole: the room came back

    # 2022 opens with nothing for the pact: the first grant holds no money in 2022 any more, so the
    # cluster holds one budget year (2021), not two; both grants still hold money, so two grants.
    outcome = await ledger.reset(programme, 2022, Money(amount_minor=0, currency="EUR"))
    assert outcome is not None and outcome.capped == 1
    assert await used_of(ledger, who) == {
        ("test.yearly", 2021): 250_000 * EUR,
        ("test.yearly", 2022): 0,
        ("test.total", 0): 250_000 * EUR,
        ("test.years", 0): 1,
        ("test.grants", 0): 2,
    }
    assert await ledger.reconcile() == []


async def test_a_withdrawal_returns_what_the_grant_held_of_a_ceiling_the_operator_has_since_removed(
    ledger: Ledger, programme: str
) -> None:
    """An operator's ceilings come and go with its file; their rows and the draws grants hold of them
    stay. A withdrawal returns what the grant held of every row, configured still or not: the ledger
    reconciles, and a ceiling configured again starts from what grants really hold."""
    operator = programme_with_pots(programme, {"hermes": 10**12})
    operator["beneficiary_ceilings"] = operator_ceilings()
    await ledger.load(config(operator))
    who = cluster()
    first = pact_grant(programme, who, {2030: 400_000 * EUR, 2031: 300_000 * EUR})
    assert await ledger.decide(first, config(operator)) == "committed"
    assert await used_of(ledger, who) == {
        ("test.yearly", 2030): 400_000 * EUR,
        ("test.yearly", 2031): 300_000 * EUR,
        ("test.total", 0): 700_000 * EUR,
        ("test.years", 0): 2,
        ("test.grants", 0): 1,
    }

    await ledger.load(config(programme_with_pots(programme, {"hermes": 10**12})))  # the ceilings removed
    event = await ledger.in_uow(lambda uow: handlers.release_grant(uow, first.application_id, None, cause="t"))
    assert event is not None and event.remaining == []
    assert await used_of(ledger, who) == {
        ("test.yearly", 2030): 0,
        ("test.yearly", 2031): 0,
        ("test.total", 0): 0,
        ("test.years", 0): 0,
        ("test.grants", 0): 0,
    }
    assert await ledger.reconcile() == []
