"""An in-memory ledger for pure handler tests (cosmicpython's FakeRepository / FakeUnitOfWork): the
same methods as `services.budget.repository.LedgerRepository`, on dicts. Locks are no-ops (one
task at a time); what the real PostgreSQL proves (locks, concurrency, delivery) stays in
tests/integration/budget."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from services.budget.beneficiaries import Draw, LimitBalance, LimitKey
from services.budget.domain import BudgetConfig, PotBalance, Slice, SliceState
from services.budget.repository import Applied, GrantRow, ProgrammeState, RefusalRow, ResetResult, Writes
from shared.delivery import OutboxRow, UnitOfWork
from shared.events import Event


@dataclass
class FakeLedgerRepository:
    programmes: dict[str, ProgrammeState] = field(default_factory=dict)
    pots: dict[str, PotBalance] = field(default_factory=dict)
    grants: dict[str, GrantRow] = field(default_factory=dict)  # by application_id
    slices: dict[str, list[Slice]] = field(default_factory=dict)  # by grant_id
    draws: dict[tuple[str, LimitKey, int], Draw] = field(default_factory=dict)  # (grant_id, key, mark_year)
    limits: dict[LimitKey, tuple[str, int]] = field(default_factory=dict)  # key -> (unit, used)
    decisions: dict[str, int] = field(default_factory=dict)
    refusals: list[RefusalRow] = field(default_factory=list)
    entries: list[tuple[Any, ...]] = field(default_factory=list)
    evaluations: set[str] = field(default_factory=set)
    writes: int = 0

    @classmethod
    def of(cls, config: BudgetConfig, open_years: Mapping[str, int] | None = None) -> FakeLedgerRepository:
        repo = cls()
        for spec in config.programmes.values():
            year = (open_years or {}).get(spec.programme)
            repo.programmes[spec.programme] = ProgrammeState(
                spec.programme, spec.currency, year, None, spec.yearly_maximum_required
            )
        for pot in config.pots:
            if pot.total is not None:
                repo.pots[pot.pot_id] = PotBalance(pot.pot_id, pot.unit, pot.total, 0, 0)
        return repo

    # -- reads and (no-op) locks ----------------------------------------------------------------

    async def lock_applications(self, application_ids: Sequence[str]) -> None:
        return None

    async def applied(self, application_ids: Sequence[str]) -> dict[str, Applied]:
        out: dict[str, Applied] = {}
        for a in application_ids:
            if a in self.decisions or a in self.grants:
                out[a] = Applied(self.decisions.get(a, 1), self.grants.get(a))
        return out

    async def lock_programmes(self, programmes: Sequence[str], *, exclusive: bool = False) -> dict[str, ProgrammeState]:
        return {p: self.programmes[p] for p in programmes if p in self.programmes}

    async def lock_programme(self, programme: str, *, exclusive: bool) -> ProgrammeState | None:
        return self.programmes.get(programme)

    async def lock_grants(self, application_ids: Sequence[str]) -> dict[str, GrantRow]:
        return {a: self.grants[a] for a in application_ids if a in self.grants}

    async def slices_of(self, grant_ids: Sequence[str]) -> dict[str, list[Slice]]:
        return {g: list(self.slices.get(g, [])) for g in grant_ids}

    async def draws_of(self, grant_ids: Sequence[str]) -> dict[str, list[Draw]]:
        return {g: [d for (gid, _, _), d in sorted(self.draws.items(), key=lambda i: str(i[0])) if gid == g] for g in grant_ids}

    async def lock_limits(self, keys: Mapping[LimitKey, str]) -> dict[LimitKey, LimitBalance]:
        out: dict[LimitKey, LimitBalance] = {}
        for key, unit in keys.items():
            unit, used = self.limits.setdefault(key, (unit, 0))
            years: dict[int, int] = {}
            if unit == "years":
                for (_, k, mark), d in self.draws.items():
                    if k == key and d.amount > 0:
                        years[mark] = years.get(mark, 0) + 1
            out[key] = LimitBalance(key, unit, used, years)
        return out

    async def lock_pots(self, pot_ids: Sequence[str]) -> dict[str, PotBalance]:
        return {p: self.pots[p] for p in pot_ids if p in self.pots}

    # -- writes ------------------------------------------------------------------------------------

    async def write(self, w: Writes) -> None:
        self.writes += 1
        by_id: dict[str, str] = {}
        for g in w.grants:
            self.grants[g.application_id] = GrantRow(
                g.grant_id,
                g.application_id,
                g.scheme,
                g.programme,
                g.instrument,
                g.currency,
                "committed",
                g.fund_shares,
                g.beneficiary_id,
                g.revision,
            )
            by_id[g.grant_id] = g.application_id
        for grant_id, pot_id, year, _programme, unit, fund, amount, state in w.slices:
            self.slices.setdefault(grant_id, []).append(Slice(pot_id, year, unit, fund, amount, state))  # type: ignore[arg-type]  # the handler writes a SliceState
        for grant_id, pot_id, year, amount in w.released_slices:
            self.slices[grant_id] = [
                replace(s, amount=s.amount - amount, state=_after(s, amount))
                if (s.pot_id, s.budget_year) == (pot_id, year)
                else s
                for s in self.slices[grant_id]
            ]
        for grant_id, status, _at in w.grant_status:
            app = next(a for a, g in self.grants.items() if g.grant_id == grant_id)
            self.grants[app] = replace(self.grants[app], status=status)
        self.entries += w.entries
        self.pots.update(w.pots)
        for key, (balance, _maximum) in w.limits.items():
            self.limits[key] = (balance.unit, balance.used)
        for grant_id, draw in w.draws:
            self.draws[(grant_id, draw.key, draw.budget_year)] = draw
        self.refusals += w.refusals
        for app, (revision, *_rest) in w.decisions.items():
            self.decisions[app] = max(revision, self.decisions.get(app, 0))

    async def apply_reset(
        self,
        programme: str,
        budget_year: int,
        yearly_maximum: int | None,
        *,
        reset_id: str,
        opened_at: datetime,
        cause: str,
        at: datetime,
    ) -> ResetResult:
        raise AssertionError("resets are set-based SQL: tested on the real PostgreSQL")

    async def year_opened(self, programme: str, budget_year: int) -> bool:
        return False

    async def record_evaluation(
        self, evaluation_id: str, application_id: str, year: int, continues: bool, event_id: str, at: datetime
    ) -> bool:
        if evaluation_id in self.evaluations:
            return False
        self.evaluations.add(evaluation_id)
        return True

    async def request_reset(self, programme: str, budget_year: int, event_id: str, at: datetime) -> bool:
        return True

    async def programme_row(self, programme: str) -> Mapping[str, Any] | None:
        state = self.programmes.get(programme)
        return None if state is None else {"open_year": state.open_year}


def _after(s: Slice, amount: int) -> SliceState:
    return "released" if s.amount - amount == 0 else s.state


@dataclass
class FakeUnitOfWork:
    """A unit of work whose outbox is a list of the events published."""

    repo: FakeLedgerRepository
    published: list[Event] = field(default_factory=list)

    async def publish(self, event: Event, *, cause: Any = None, event_id: str | None = None) -> str:
        self.published.append(event)
        return event_id or str(len(self.published))

    async def add(self, row: OutboxRow) -> None:
        raise AssertionError("the budget publishes events, never raw rows")

    def as_uow(self) -> UnitOfWork[FakeLedgerRepository]:
        """Typed as the seedwork's unit of work for the handlers' signatures (duck-typed underneath)."""
        return self  # type: ignore[return-value]  # a structural stand-in: publish() and repo are what handlers use
