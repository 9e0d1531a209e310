"""The budget's pure rules: how a proposed grant splits over pots. No I/O here."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from shared.events import ProposedGrant


@dataclass(frozen=True)
class Draw:
    """An amount one grant draws on one fund in one budget year."""

    fund: str
    budget_year: int
    amount_minor: int


def split(grant: ProposedGrant) -> list[Draw]:
    """Split every yearly amount over the fund shares, exactly: each share is rounded down and
    the remainder (at most a few minor units) goes to the first fund, so the parts sum to the whole."""
    draws: list[Draw] = []
    for slice_ in grant.schedule:
        amount = slice_.amount.amount_minor
        parts = [amount * share.numerator // share.denominator for share in grant.fund_shares]
        parts[0] += amount - sum(parts)
        draws += [
            Draw(share.fund, slice_.budget_year, part)
            for share, part in zip(grant.fund_shares, parts, strict=True)
            if part > 0
        ]
    return draws


@dataclass(frozen=True)
class Pot:
    pot_id: str
    fund: str
    budget_year: int | None
    total_minor: int
    committed_minor: int
    released_minor: int

    @property
    def available_minor(self) -> int:
        return self.total_minor - self.committed_minor + self.released_minor


@dataclass(frozen=True)
class Shortfall:
    pot_id: str
    budget_year: int
    available_minor: int
    requested_minor: int


def pot_for(draw: Draw, pots: list[Pot]) -> Pot | None:
    """A year's own pot if the programme has one for that year, else its whole-period pot."""
    yearly = [p for p in pots if p.fund == draw.fund and p.budget_year == draw.budget_year]
    if yearly:
        return yearly[0]
    period = [p for p in pots if p.fund == draw.fund and p.budget_year is None]
    return period[0] if period else None


def check(draws: list[Draw], pots: list[Pot]) -> tuple[dict[str, int], Shortfall | None, Draw | None]:
    """Total per pot, the first pot the draws do not fit, and the first draw with no pot at all."""
    need: dict[str, int] = defaultdict(int)
    years: dict[str, int] = {}
    for draw in draws:
        pot = pot_for(draw, pots)
        if pot is None:
            return {}, None, draw
        need[pot.pot_id] += draw.amount_minor
        years.setdefault(pot.pot_id, draw.budget_year)
    by_id = {p.pot_id: p for p in pots}
    for pot_id in sorted(need):
        pot = by_id[pot_id]
        if need[pot_id] > pot.available_minor:
            return dict(need), Shortfall(pot_id, years[pot_id], pot.available_minor, need[pot_id]), None
    return dict(need), None, None
