from __future__ import annotations

from pydantic import Field

from shared.settings import CommonSettings


class OpenDataSettings(CommonSettings):
    """The open-data consumer needs only the common settings (Kafka, PostgreSQL, logging)."""


class ExportSettings(OpenDataSettings):
    """`clustergrants export ...`: also the operator's identifiers and names."""

    opendata_file: str | None = Field(
        default=None, description="Operator YAML file of open-data identifiers and names (opendata.example.yaml)."
    )
