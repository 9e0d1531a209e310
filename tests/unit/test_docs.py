"""docs/asyncapi.yaml is generated from the code (`make docs`) and must not go stale."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import jsonschema
import pytest
import yaml

from shared.events import CeilingReset
from tools.asyncapi import render
from tools.settings_doc import README, rewrite

pytestmark = pytest.mark.unit

DOC = Path(__file__).resolve().parents[2] / "docs" / "asyncapi.yaml"


def test_asyncapi_document_is_up_to_date() -> None:
    assert DOC.read_text() == render(), "docs/asyncapi.yaml is stale: run `make docs` and commit it"


def test_every_reference_resolves_and_payloads_validate_real_events() -> None:
    document = yaml.safe_load(DOC.read_text())

    def refs(node: object) -> list[str]:
        if isinstance(node, dict):
            return [v for k, v in node.items() if k == "$ref"] + [r for v in node.values() for r in refs(v)]
        if isinstance(node, list):
            return [r for v in node for r in refs(v)]
        return []

    for ref in refs(document):
        target: object = document
        for part in ref.removeprefix("#/").split("/"):
            assert isinstance(target, dict) and part in target, f"dangling $ref {ref}"
            target = target[part]

    schema = {**document["components"]["schemas"]["CeilingReset"], "components": document["components"]}
    event = CeilingReset(reset_id="ttc/2015", programme="ttc", budget_year=2015, opened_at=datetime(2015, 1, 1, tzinfo=UTC))
    jsonschema.validate(event.model_dump(mode="json"), schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**event.model_dump(mode="json"), "budget_year": "2015"}, schema)


def test_readme_settings_table_is_up_to_date() -> None:
    text = README.read_text()
    assert "| `DATABASE_URL` |" in text
    assert text == rewrite(text), "the README's settings table is stale: run `make docs` and commit it"
