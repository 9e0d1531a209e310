"""Money as integer minor units plus an ISO 4217 currency: never a float.

Amounts of different currencies are never added together; `Money.__add__` refuses it.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal, TypeGuard, get_args

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from pydantic_core import PydanticCustomError

#: The currencies the seed schemes pay in (EUR: VLAIO, TTC; SEK: Tillväxtverket; NOK: Norway). The one
#: place they are listed: a new currency is added here (and to MINOR_UNITS).
Currency = Literal["EUR", "SEK", "NOK"]
CURRENCIES: Final[tuple[Currency, ...]] = get_args(Currency)

#: Minor units per major unit; all three currencies have two decimals (cent, öre, øre).
MINOR_UNITS: dict[str, int] = {"EUR": 100, "SEK": 100, "NOK": 100}


def is_currency(value: object) -> TypeGuard[Currency]:
    return value in CURRENCIES


def _whole_non_negative_minor_units(value: Any) -> Any:
    """Refuse fractional, negative and non-numeric amounts with their own error types."""
    if isinstance(value, bool):
        raise PydanticCustomError("money_type", "amount_minor must be an integer number of minor units")
    if isinstance(value, float):
        if not value.is_integer():
            raise PydanticCustomError(
                "money_fractional",
                "amount_minor must be a whole number of minor units (cents, öre, øre); fractions are not allowed",
            )
        raise PydanticCustomError("money_type", "amount_minor must be a JSON integer, not a decimal number")
    if isinstance(value, str):
        raise PydanticCustomError("money_type", "amount_minor must be a JSON integer, not a string")
    if isinstance(value, int) and value < 0:
        raise PydanticCustomError("money_negative", "amount_minor must not be negative")
    return value


MinorUnits = Annotated[int, BeforeValidator(_whole_non_negative_minor_units), Field(strict=True, ge=0)]


class Money(BaseModel):
    """An amount of money in integer minor units of one currency."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    amount_minor: MinorUnits = Field(description="Amount in minor units (cents), a non-negative integer.", examples=[50_000_000])
    currency: Currency = Field(description="ISO 4217 currency code.", examples=["EUR"])

    @classmethod
    def zero(cls, currency: Currency) -> Money:
        return cls(amount_minor=0, currency=currency)

    @classmethod
    def of_major(cls, major: int, currency: Currency) -> Money:
        return cls(amount_minor=major * MINOR_UNITS[currency], currency=currency)

    def _same_currency(self, other: Money) -> None:
        if other.currency != self.currency:
            raise ValueError(f"cannot combine {self.currency} with {other.currency}")

    def __add__(self, other: Money) -> Money:
        self._same_currency(other)
        return Money(amount_minor=self.amount_minor + other.amount_minor, currency=self.currency)

    def __le__(self, other: Money) -> bool:
        self._same_currency(other)
        return self.amount_minor <= other.amount_minor

    def __lt__(self, other: Money) -> bool:
        self._same_currency(other)
        return self.amount_minor < other.amount_minor

    def __str__(self) -> str:
        major, minor = divmod(self.amount_minor, MINOR_UNITS[self.currency])
        return f"{self.currency} {major:,}.{minor:02d}"
