"""The HTTP intake's edges (issue 10): each refusal comes early, is machine-readable, and stores nothing.

Credentials, media types, size by Content-Length, the database away, CloudEvents in binary and
structured mode, and errors that never leak the request body. The streaming limit is proven
against a real uvicorn in tests/integration/test_intake_http_server.py.
"""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from services.intake.domain import DEFAULT_POLICY, Invalid, parse_structured, parse_submission
from services.intake.handlers import Outcome, Submission
from services.intake.http import create_app
from services.intake.openapi import ApplicationStatus
from shared.events import FieldError

pytestmark = pytest.mark.unit

SAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "local" / "samples" / "ttc-voucher.json"
CE_TYPE = "org.clustergrants.application.submitted.v1"


async def ready() -> bool:
    return True


async def no_assessments(raw: bytes) -> list[FieldError]:
    return []


class Recorder:
    """A receive() that validates like intake does, without a database, and records what it got."""

    def __init__(self) -> None:
        self.seen: list[Submission] = []

    async def __call__(self, submission: Submission) -> Outcome:
        self.seen.append(submission)
        if submission.envelope == "structured":
            parsed = parse_structured(submission.raw, DEFAULT_POLICY)
        else:
            parsed = parse_submission(submission.raw, DEFAULT_POLICY, prior=submission.attribute_errors)
        if isinstance(parsed, Invalid):
            return Outcome("rejected", parsed.application_id, parsed.errors, "rej-1")
        return Outcome("received", parsed.application_id, [])


def client(receive, max_body_bytes: int = 10_000) -> httpx.AsyncClient:
    app = create_app(receive, no_assessments, ready, ["token-a", "token-b"], max_body_bytes=max_body_bytes, retry_after_s=7)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://intake")


AUTH = {"Authorization": "Bearer token-a"}
JSON_HEADERS = {**AUTH, "Content-Type": "application/json"}


def sample() -> bytes:
    return SAMPLE.read_bytes()


def refusal(response: httpx.Response) -> tuple[int, str]:
    body = response.json()
    assert body["status"] == "refused" and len(body["errors"]) == 1, body
    error = body["errors"][0]
    assert isinstance(error["loc"], list) and error["message"], error
    return response.status_code, error["type"]


async def test_a_valid_application_is_received() -> None:
    receive = Recorder()
    async with client(receive) as http:
        response = await http.post("/v1/applications", content=sample(), headers=JSON_HEADERS)
    assert response.status_code == 202 and response.json() == {"application_id": "DEMO-TTC-VOUCHER", "status": "received"}
    assert receive.seen[0].envelope == "plain"


@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "application/x-www-form-urlencoded", "application/xml", "multipart/form-data; boundary=x",
     "application/json-patch+json", "application/cloudevents-batch+json", "application/json; charset=latin-1", "json"],
)  # fmt: skip
async def test_a_body_that_is_not_json_is_refused_with_415_before_it_is_read(content_type: str | None) -> None:
    receive = Recorder()
    headers = dict(AUTH) if content_type is None else {**AUTH, "Content-Type": content_type}
    async with client(receive) as http:
        response = await http.post("/v1/applications", content=sample(), headers=headers)
    assert refusal(response)[0] == 415, response.text
    assert response.json()["errors"][0]["type"] in ("media_type_unsupported", "charset_unsupported")
    assert receive.seen == []


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON; Charset=UTF-8",
        'application/json;charset="utf-8"',
    ],
)
async def test_json_with_or_without_a_utf8_charset_is_accepted(content_type: str) -> None:
    async with client(Recorder()) as http:
        response = await http.post("/v1/applications", content=sample(), headers={**AUTH, "Content-Type": content_type})
    assert response.status_code == 202, response.text


async def test_two_content_type_headers_are_refused() -> None:
    async with client(Recorder()) as http:
        response = await http.post(
            "/v1/applications",
            content=sample(),
            headers=[("Authorization", "Bearer token-a"), ("Content-Type", "application/json"), ("Content-Type", "text/plain")],
        )
    assert refusal(response) == (415, "media_type_unsupported")


async def test_a_declared_length_over_the_limit_is_refused_with_413_before_reading() -> None:
    receive = Recorder()
    async with client(receive, max_body_bytes=100) as http:
        response = await http.post("/v1/applications", content=b"x" * 101, headers=JSON_HEADERS)
        exact = await http.post("/v1/applications", content=b"{" + b" " * 98 + b"}", headers=JSON_HEADERS)
    assert refusal(response) == (413, "body_too_large") and response.headers["connection"] == "close"
    assert exact.status_code == 422  # exactly the limit is read (and is not an application)
    assert [len(s.raw) for s in receive.seen] == [100]


async def test_a_chunked_body_over_the_limit_is_refused_with_413() -> None:
    receive = Recorder()

    async def chunks():
        for _ in range(50):
            yield b"x" * 10

    async with client(receive, max_body_bytes=100) as http:
        response = await http.post("/v1/applications", content=chunks(), headers=JSON_HEADERS)
    assert refusal(response) == (413, "body_too_large") and receive.seen == []


async def test_while_the_database_is_away_the_answer_is_503_with_retry_after() -> None:
    async def database_away(submission: Submission) -> Outcome:
        raise ConnectionRefusedError("connect call failed")

    async with client(database_away) as http:
        response = await http.post("/v1/applications", content=sample(), headers=JSON_HEADERS)
    assert refusal(response) == (503, "service_unavailable")
    assert response.headers["retry-after"] == "7"


async def test_a_database_that_does_not_answer_in_time_is_503_too() -> None:
    async def hanging(submission: Submission) -> Outcome:
        await asyncio.sleep(30)
        raise AssertionError("not reached")

    app = create_app(hanging, no_assessments, ready, ["token-a"], 10_000, request_timeout_s=0.2)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://intake") as http:
        response = await http.post("/v1/applications", content=sample(), headers=JSON_HEADERS)
    assert refusal(response) == (503, "service_unavailable") and "retry-after" in response.headers


async def test_an_unexpected_error_answers_500_without_quoting_the_body(capsys: pytest.CaptureFixture[str]) -> None:
    async def broken(submission: Submission) -> Outcome:
        raise ValueError(f"cannot handle {submission.raw!r}")

    async with client(broken) as http:
        response = await http.post("/v1/applications", content=b'{"email": "secret.person@example.org"}', headers=JSON_HEADERS)
    assert response.status_code == 500 and response.json() == {"detail": "internal error"}
    captured = capsys.readouterr()
    assert "request failed" in captured.out + captured.err
    assert "secret.person" not in captured.out + captured.err


async def test_duplicate_keys_control_characters_and_bidi_overrides_are_refused_over_http() -> None:
    document = json.loads(sample())
    document["applicant"]["organisation_name"] = "MedTech\u202e Aachen"
    document["contact"]["name"] = "Anna\r\nBcc: everyone@example.org"
    raw = json.dumps(document).replace('"scheme"', '"language": "de", "scheme"', 1).encode()
    async with client(Recorder()) as http:
        response = await http.post("/v1/applications", content=raw, headers=JSON_HEADERS)
    assert response.status_code == 422
    types = {(tuple(e["loc"]), e["type"]) for e in response.json()["errors"]}
    assert types == {
        (("language",), "json_duplicate_key"),
        (("applicant", "organisation_name"), "string_bidi_control"),
        (("contact", "name"), "string_control_character"),
    }


# --- CloudEvents over HTTP -------------------------------------------------------------------


def binary_headers(**overrides: str | None) -> dict[str, str]:
    headers = {
        **JSON_HEADERS,
        "ce-specversion": "1.0",
        "ce-id": "portal-a-42",
        "ce-source": "https://portal-a.example.org/ttc",
        "ce-type": CE_TYPE,
        "ce-time": "2012-04-02T07:00:05Z",
    }
    for name, value in overrides.items():
        key = f"ce-{name}"
        if value is None:
            headers.pop(key, None)
        else:
            headers[key] = value
    return headers


async def test_binary_mode_with_valid_attributes_is_received() -> None:
    receive = Recorder()
    async with client(receive) as http:
        response = await http.post("/v1/applications", content=sample(), headers=binary_headers(source="%2Fportal%2Fa"))
    assert response.status_code == 202, response.text
    assert receive.seen[0].envelope == "binary" and receive.seen[0].attribute_errors == []


@pytest.mark.parametrize(
    ("overrides", "loc", "error_type"),
    [
        ({"specversion": "0.3"}, "ce-specversion", "cloudevents_specversion"),
        ({"specversion": None}, "ce-specversion", "cloudevents_specversion"),
        ({"id": None}, "ce-id", "cloudevents_id"),
        ({"source": "not a uri"}, "ce-source", "cloudevents_source"),
        ({"source": "1http://x"}, "ce-source", "cloudevents_source"),
        ({"type": "org.clustergrants.application.received.v1"}, "ce-type", "cloudevents_type"),
        ({"time": "2012-04-02 07:00:05"}, "ce-time", "cloudevents_time"),
        ({"time": "2012-02-30T07:00:05Z"}, "ce-time", "cloudevents_time"),
        ({"time": "yesterday"}, "ce-time", "cloudevents_time"),
        ({"portalnote": "%FF%FE"}, "ce-portalnote", "cloudevents_header_encoding"),
        ({"Bad_Name": "x"}, "ce-bad_name", "cloudevents_attribute_name"),
    ],
)
async def test_binary_mode_attributes_are_validated(overrides: dict[str, str | None], loc: str, error_type: str) -> None:
    async with client(Recorder()) as http:
        response = await http.post("/v1/applications", content=sample(), headers=binary_headers(**overrides))
    assert response.status_code == 422, response.text
    assert {(tuple(e["loc"]), e["type"]) for e in response.json()["errors"]} == {(("header", loc), error_type)}


def structured(**overrides: object) -> bytes:
    event: dict[str, object] = {
        "specversion": "1.0",
        "id": "portal-b-7",
        "source": "/portal/b",
        "type": CE_TYPE,
        "time": "2012-04-02T09:00:05+02:00",
        "datacontenttype": "application/json",
        "data": json.loads(sample()),
    }
    for name, value in overrides.items():
        if value is None:
            event.pop(name, None)
        else:
            event[name] = value
    return json.dumps(event).encode()


async def test_structured_mode_is_received() -> None:
    receive = Recorder()
    headers = {**AUTH, "Content-Type": "application/cloudevents+json; charset=utf-8"}
    async with client(receive) as http:
        response = await http.post("/v1/applications", content=structured(), headers=headers)
        encoded = base64.b64encode(sample()).decode()
        as_base64 = await http.post("/v1/applications", content=structured(data=None, data_base64=encoded), headers=headers)
    assert response.status_code == 202, response.text
    assert as_base64.status_code == 202, as_base64.text
    assert receive.seen[0].envelope == "structured"


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"specversion": "0.3"}, {(("specversion",), "cloudevents_specversion")}),
        ({"id": ""}, {(("id",), "cloudevents_id")}),
        ({"source": None}, {(("source",), "cloudevents_source")}),
        ({"type": "something.else"}, {(("type",), "cloudevents_type")}),
        ({"time": "02/04/2012"}, {(("time",), "cloudevents_time")}),
        ({"datacontenttype": "text/xml"}, {(("datacontenttype",), "cloudevents_datacontenttype")}),
        ({"data": None}, {(("data",), "missing")}),
        ({"data_base64": "!!!", "data": None}, {(("data_base64",), "cloudevents_data")}),
        ({"data": {"application_id": "X-1"}}, None),  # the application's own errors, under data
    ],
)
async def test_structured_mode_attributes_and_data_are_validated(
    overrides: dict[str, object], expected: set[tuple[tuple[str, ...], str]] | None
) -> None:
    headers = {**AUTH, "Content-Type": "application/cloudevents+json"}
    async with client(Recorder()) as http:
        response = await http.post("/v1/applications", content=structured(**overrides), headers=headers)
    assert response.status_code == 422, response.text
    found = {(tuple(e["loc"]), e["type"]) for e in response.json()["errors"]}
    if expected is None:
        assert all(loc[0] == "data" for loc, _ in found) and (("data", "scheme"), "missing") in found
    else:
        assert found == expected


async def test_the_status_of_an_application() -> None:
    async def lookup(application_id: str) -> ApplicationStatus | None:
        if application_id != "A-1":
            return None
        at = datetime(2020, 1, 1, tzinfo=UTC)
        return ApplicationStatus(application_id="A-1", status="received", scheme="nic.cluster", channel="http", received_at=at)

    app = create_app(Recorder(), no_assessments, ready, ["token-a"], 100, lookup=lookup)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://intake") as http:
        found = await http.get("/v1/applications/A-1", headers=AUTH)
        missing = await http.get("/v1/applications/B-2", headers=AUTH)
        odd = await http.get("/v1/applications/%E2%80%AE", headers=AUTH)
        anonymous = await http.get("/v1/applications/A-1")
    assert found.status_code == 200 and found.json()["scheme"] == "nic.cluster"
    assert refusal(missing) == (404, "not_found") and refusal(odd) == (404, "not_found")
    assert refusal(anonymous) == (401, "unauthorized")
