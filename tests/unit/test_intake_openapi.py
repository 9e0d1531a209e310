"""The intake's OpenAPI 3.1 document passes checks that can fail (issue 14, part 1).

openapi-spec-validator checks the document's structure, but it said OK on the document main served
before (kept in fixtures/openapi-before-issue-14.json) whose `$ref`s pointed nowhere. So this test
also resolves every `$ref` with `referencing` and validates every example against its schema with
jsonschema (Draft 2020-12, the OAS 3.1 dialect), references resolved; it shows that both checks fail
on the old document and on a broken copy of the new one. The answers the app really gives are
validated against the documented schema of their status code.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from openapi_spec_validator import validate as validate_spec
from referencing import Registry, Resource
from referencing.exceptions import Unresolvable
from referencing.jsonschema import DRAFT202012

from services.intake.domain import Invalid, parse_structured, parse_submission
from services.intake.handlers import Outcome, Submission
from services.intake.http import DOCS_CSP, create_app
from services.intake.openapi import EXAMPLE_APPLICATION, EXAMPLE_ASSESSMENT, EXAMPLE_CLOUDEVENT
from shared.events import Application, AssessmentSubmitted, FieldError

pytestmark = pytest.mark.unit

BEFORE = Path(__file__).parent / "fixtures" / "openapi-before-issue-14.json"
DOC_URI = "urn:clustergrants:intake:openapi"


async def ready() -> bool:
    return True


async def no_assessments(raw: bytes) -> list[FieldError]:
    return []


async def receive(submission: Submission) -> Outcome:
    parsed = parse_structured(submission.raw) if submission.envelope == "structured" else parse_submission(submission.raw)
    if isinstance(parsed, Invalid):
        return Outcome("rejected", parsed.application_id, parsed.errors, "rej-1")
    if parsed.application_id == "TAKEN":
        error = FieldError(loc=["application_id"], type="application_id_conflict", message="taken")
        return Outcome("conflict", None, [error], "rej-2", "TAKEN")
    return Outcome("received", parsed.application_id, [])


def app() -> Any:
    return create_app(receive, no_assessments, ready, ["token-a"], 2000)


async def served() -> dict[str, Any]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app()), base_url="http://intake") as http:
        response = await http.get("/openapi.json")
    assert response.status_code == 200
    return response.json()


def refs(node: Any, path: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield path, value
            else:
                yield from refs(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from refs(value, f"{path}/{i}")


def registry(document: dict[str, Any]) -> Registry:
    return Registry().with_resource(DOC_URI, Resource.from_contents(document, default_specification=DRAFT202012))


def dangling(document: dict[str, Any]) -> list[str]:
    """Every $ref that does not resolve, resolved as a JSON Schema validator would."""
    resolver = registry(document).resolver(base_uri=DOC_URI)
    missing = []
    for where, ref in refs(document):
        try:
            resolver.lookup(ref)
        except Unresolvable:
            missing.append(f"{where}: {ref}")
    return missing


def examples(document: dict[str, Any]) -> Iterator[tuple[str, str, Any]]:
    """(where, JSON pointer of the schema, example value) of every media-type example."""
    for path, item in document["paths"].items():
        for method, operation in item.items():
            escaped = path.replace("~", "~0").replace("/", "~1")
            bodies = [("requestBody", operation.get("requestBody", {}))]
            bodies += [(f"responses/{code}", r) for code, r in operation.get("responses", {}).items()]
            for where, body in bodies:
                for media, content in body.get("content", {}).items():
                    pointer = f"/paths/{escaped}/{method}/{where}/content/{media.replace('/', '~1')}/schema"
                    for name, example in content.get("examples", {}).items():
                        yield f"{method} {path} {where} {media} {name}", pointer, example["value"]
                    if "example" in content:
                        yield f"{method} {path} {where} {media}", pointer, content["example"]


def invalid_examples(document: dict[str, Any]) -> list[str]:
    reg = registry(document)
    wrong = []
    for where, pointer, value in examples(document):
        validator = jsonschema.Draft202012Validator(
            {"$ref": f"{DOC_URI}#{pointer}"}, registry=reg, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
        )
        try:
            errors = [e.message for e in validator.iter_errors(value)]
        except Unresolvable as error:
            errors = [f"unresolvable {error}"]
        if errors:
            wrong.append(f"{where}: {errors[:2]}")
    return wrong


# --- the served document ---------------------------------------------------------------------------


async def test_the_document_is_valid_openapi_3_1() -> None:
    document = await served()
    assert document["openapi"].startswith("3.1")
    validate_spec(document)


async def test_every_reference_resolves_and_every_model_is_a_component() -> None:
    document = await served()
    assert [r for _, r in refs(document)], "the document uses references"
    assert dangling(document) == []
    schemas = document["components"]["schemas"]
    for model in ("ApplicationSubmitted", "Applicant", "Contact", "FundingRequest", "Money", "BudgetYear", "Member"):
        assert model in schemas, model
    assert not any("$defs" in json.dumps(s) for s in schemas.values()), "no nested definitions left behind"


async def test_every_example_validates_against_its_schema() -> None:
    document = await served()
    found = list(examples(document))
    assert len(found) >= 15, "every request and answer has an example"
    assert invalid_examples(document) == []


async def test_every_answer_is_documented_with_a_body() -> None:
    document = await served()
    submit = document["paths"]["/v1/applications"]["post"]["responses"]
    assert set(submit) == {"202", "401", "409", "413", "415", "422", "503"}
    status = document["paths"]["/v1/applications/{application_id}"]["get"]["responses"]
    assert set(status) == {"200", "401", "404", "503"}
    for item in document["paths"].values():
        for operation in item.values():
            for code, response in operation["responses"].items():
                assert "application/json" in response.get("content", {}), code
    assert "Retry-After" in submit["503"]["headers"] and "WWW-Authenticate" in submit["401"]["headers"]
    assert set(submit) >= set(document["paths"]["/v1/assessments"]["post"]["responses"]) - {"409"}


def test_the_examples_are_what_intake_accepts() -> None:
    assert isinstance(parse_submission(json.dumps(EXAMPLE_APPLICATION).encode()), Application)
    assert isinstance(parse_structured(json.dumps(EXAMPLE_CLOUDEVENT).encode()), Application)
    AssessmentSubmitted.model_validate(EXAMPLE_ASSESSMENT)


async def test_the_answers_given_are_the_answers_documented() -> None:
    document = await served()
    reg = registry(document)
    responses = document["paths"]["/v1/applications"]["post"]["responses"]
    good = json.dumps(EXAMPLE_APPLICATION).encode()
    taken = json.dumps({**EXAMPLE_APPLICATION, "application_id": "TAKEN"}).encode()
    auth = {"Authorization": "Bearer token-a", "Content-Type": "application/json"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app()), base_url="http://intake") as http:
        answers = [
            await http.post("/v1/applications", content=good, headers=auth),
            await http.post("/v1/applications", content=taken, headers=auth),
            await http.post("/v1/applications", content=b"{}", headers=auth),
            await http.post("/v1/applications", content=good, headers={**auth, "Authorization": "Bearer nope"}),
            await http.post("/v1/applications", content=good, headers={**auth, "Content-Type": "text/plain"}),
            await http.post("/v1/applications", content=b" " * 2001, headers=auth),
        ]
    assert [a.status_code for a in answers] == [202, 409, 422, 401, 415, 413]
    for answer in answers:
        pointer = f"/paths/~1v1~1applications/post/responses/{answer.status_code}/content/application~1json/schema"
        assert str(answer.status_code) in responses
        jsonschema.Draft202012Validator({"$ref": f"{DOC_URI}#{pointer}"}, registry=reg).validate(answer.json())


# --- the checks fail on a broken document --------------------------------------------------------


def test_the_document_main_served_fails_these_checks_though_the_spec_validator_passed_it() -> None:
    before = json.loads(BEFORE.read_text())
    validate_spec(before)  # says OK: structure alone proves nothing
    missing = dangling(before)
    assert len(missing) >= 9, missing
    assert any("#/components/schemas/Money" in m for m in missing)


async def test_a_dangling_reference_or_a_wrong_example_is_caught() -> None:
    document = await served()
    broken = copy.deepcopy(document)
    broken["components"]["schemas"]["FundingRequest"]["properties"]["years"]["items"]["$ref"] = "#/components/schemas/Nope"
    assert dangling(broken) == ["/components/schemas/FundingRequest/properties/years/items: #/components/schemas/Nope"]
    wrong = copy.deepcopy(document)
    example = wrong["paths"]["/v1/applications"]["post"]["requestBody"]["content"]["application/json"]["examples"]
    example["voucher"]["value"]["funding"]["years"][0]["requested"]["amount_minor"] = "500000"
    assert len(invalid_examples(wrong)) == 1
    unknown = copy.deepcopy(document)
    unknown["components"]["schemas"].pop("Money")
    assert dangling(unknown) and invalid_examples(unknown)


# --- the docs page: from the package, under a Content-Security-Policy -------------------------------


async def test_the_docs_are_served_from_the_package_under_a_content_security_policy() -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app()), base_url="http://intake") as http:
        page = await http.get("/docs")
        init = await http.get("/docs/init.js")
        bundle = await http.get("/docs/static/swagger-ui-bundle.js")
        css = await http.get("/docs/static/swagger-ui.css")
        other = await http.get("/docs/static/..%2Fcore.py")
        redoc = await http.get("/redoc")
    assert page.status_code == 200 and page.headers["content-security-policy"] == DOCS_CSP
    assert "script-src 'self'" in DOCS_CSP and "unsafe-eval" not in DOCS_CSP and "'unsafe-inline'" not in DOCS_CSP.split(";")[1]
    assert "http" not in page.text.replace('charset="utf-8"', ""), "no third-party URL in the page"
    assert "<script>" not in page.text, "no inline script (the CSP would block it)"
    assert init.status_code == 200 and "validatorUrl: null" in init.text
    assert bundle.status_code == 200 and b"SwaggerUIBundle" in bundle.content[:2000] and len(bundle.content) > 500_000
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert other.status_code == 404 and redoc.status_code == 404
