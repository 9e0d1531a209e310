from __future__ import annotations

from pydantic import Field, field_validator

from shared.schemes import Family, parse_families
from shared.settings import CommonSettings


class EligibilitySettings(CommonSettings):
    eligibility_schemes: str = Field(
        default="",
        description="Scheme families this instance decides, comma-separated (vlaio, ttc, s3, nic); empty: all. "
        "Each family set consumes in a consumer group of its own (clustergrants.eligibility.<family>); deploy "
        "each family exactly once (Kubernetes: one Deployment per family), or one instance with all.",
    )

    @field_validator("eligibility_schemes")
    @classmethod
    def _known_families(cls, value: str) -> str:
        parse_families(value)
        return value

    @property
    def families(self) -> tuple[Family, ...]:
        return parse_families(self.eligibility_schemes)

    eligibility_operator_parameters_file: str | None = Field(
        default=None,
        description="YAML file of operator-set parameters (a mounted ConfigMap in Kubernetes); "
        "unset parameters make the criteria that need them 'not decidable'.",
    )
