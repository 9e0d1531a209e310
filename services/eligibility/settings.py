from __future__ import annotations

from pydantic import Field

from shared.settings import CommonSettings


class EligibilitySettings(CommonSettings):
    eligibility_operator_parameters_file: str | None = Field(
        default=None,
        description="YAML file of operator-set parameters (a mounted ConfigMap in Kubernetes); "
        "unset parameters make the criteria that need them 'not decidable'.",
    )
