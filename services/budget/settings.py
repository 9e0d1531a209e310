from __future__ import annotations

from pydantic import Field

from shared.settings import CommonSettings


class BudgetSettings(CommonSettings):
    budget_pots_file: str | None = Field(
        default=None,
        description="Operator YAML file of the budget figures the documents do not give (same format as pots.yaml).",
    )
