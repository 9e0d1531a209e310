"""S3 step 2 reads the project's own step-1 selection: a portal's claim alone never passes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.eligibility.schemes.s3_financing.selection import OwnSelection, verdict
from shared.events import Application

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]
ORG = "SE-ON-8024000005"


def financing(claim: list[str] | None) -> Application:
    body = json.loads((ROOT / "deploy/local/samples/s3-financing-vinnvaxt.json").read_text())
    body["selected_for"] = claim
    return Application.model_validate(body)


@pytest.mark.parametrize(
    ("claim", "own", "outcome", "key"),
    [
        (
            ["s3-platform"],
            OwnSelection(("s3-2018",), frozenset({"SE-ON-5560912148"})),
            "failed",
            "s3.financing.claim_not_in_own_selection",
        ),
        (None, OwnSelection(("s3-2018",), frozenset()), "failed", "s3.financing.not_selected"),
        (["s3-platform"], OwnSelection(), "not_decidable", "s3.financing.own_selection_unknown"),
        (None, OwnSelection(("s3-2018",), frozenset({ORG})), "passed", "s3.financing.selected_by_project"),
        (None, OwnSelection((), frozenset(), frozenset({ORG})), "passed", "s3.financing.selected_outside_project"),
    ],
)
def test_the_own_result_decides_never_the_claim(claim: list[str] | None, own: OwnSelection, outcome: str, key: str) -> None:
    result = verdict(financing(claim), ORG, own)
    assert (result.criterion, result.outcome, result.message_key) == ("selected_for_platform", outcome, key)


def test_without_a_register_identity_a_case_handler_decides() -> None:
    assert verdict(financing(["s3-platform"]), None, OwnSelection(("c",), frozenset({ORG}))).outcome == "not_decidable"
