"""The HTTP intake refuses every request without valid credentials, before reading or storing anything,
with one answer for every kind of bad credential (no oracle) and never a 500."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from services.intake.handlers import Outcome, Submission
from services.intake.http import create_app

pytestmark = pytest.mark.unit

TOKENS = ["portal-a-token-0123456789", "portal-b-token-9876543210"]


def client() -> tuple[httpx.AsyncClient, list[bytes]]:
    seen: list[bytes] = []

    async def receive(submission: Submission) -> Outcome:
        seen.append(submission.raw)
        return Outcome("received", "APP-1", [])

    async def assess(raw: bytes) -> list[Any]:
        seen.append(raw)
        return []

    async def ready() -> bool:
        return True

    app = create_app(receive, assess, ready, TOKENS, 1_000_000)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://intake"), seen


BAD_CREDENTIALS: list[list[tuple[str, bytes]]] = [
    [],
    [("Authorization", b"")],
    [("Authorization", b"Bearer")],
    [("Authorization", b"Bearer ")],
    [("Authorization", b"Bearer wrong")],
    [("Authorization", f"Basic {TOKENS[0]}".encode())],
    [("Authorization", f"bearer{TOKENS[0]}".encode())],
    [("Authorization", f"Bearer {TOKENS[0]}x".encode())],
    [("Authorization", f"Bearer {TOKENS[0][:-1]}".encode())],
    [("Authorization", f"Bearer {TOKENS[0].upper()}".encode())],
    [("Authorization", f"Bearer {TOKENS[0]},{TOKENS[1]}".encode())],
    [("Authorization", f"Bearer {TOKENS[0]} {TOKENS[1]}".encode())],
    [("Authorization", b"Bearer dev-token")],
    # Non-ASCII: once a 500 (hmac.compare_digest refuses non-ASCII str); bytes as sent on the wire.
    [("Authorization", "Bearer pörtal-a-token".encode())],
    [("Authorization", "Bearer portal-a-token-0123456789\u202e".encode())],
    [("Authorization", b"Bearer \xff\xfe\xfd")],
    [("Authorization", "Bearer 🔑".encode())],
    # Several Authorization headers, even when one of them is right.
    [("Authorization", f"Bearer {TOKENS[0]}".encode()), ("Authorization", f"Bearer {TOKENS[1]}".encode())],
    [("Authorization", f"Bearer {TOKENS[0]}".encode()), ("Authorization", b"Bearer wrong")],
]


@pytest.mark.parametrize("path", ["/v1/applications", "/v1/assessments"])
@pytest.mark.parametrize("credentials", BAD_CREDENTIALS)
async def test_requests_without_one_valid_bearer_token_are_refused_alike(path: str, credentials: list[tuple[str, bytes]]) -> None:
    http, seen = client()
    async with http:
        # httpx sends str names with bytes values as they are (its annotations want both of one kind);
        # the credentials under test are bytes, some of them not text.
        wrong = await http.post(
            path,
            content=b"{}",
            # (ignore below) see above
            headers=[("Content-Type", b"application/json"), ("Authorization", b"Bearer x")],  # type: ignore[arg-type]
        )
        response = await http.post(
            path,
            content=b'{"application_id": "APP-1"}',
            headers=[("Content-Type", b"application/json"), *credentials],  # type: ignore[arg-type]  # see above
        )
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == "Bearer"
    # No oracle: the same body and headers as a plainly wrong token, whatever was wrong.
    assert response.json() == wrong.json()
    assert response.json()["errors"][0]["type"] == "unauthorized"
    assert response.headers["www-authenticate"] == wrong.headers["www-authenticate"]
    assert seen == [], "nothing is handled for an unauthenticated request"


@pytest.mark.parametrize("token", TOKENS)
@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
async def test_each_configured_token_is_accepted(token: str, scheme: str) -> None:
    http, seen = client()
    async with http:
        response = await http.post(
            "/v1/applications", content=b"{}", headers={"Authorization": f"{scheme} {token}", "Content-Type": "application/json"}
        )
    assert response.status_code == 202 and seen == [b"{}"]


async def test_no_configured_tokens_refuses_everyone() -> None:
    async def receive(submission: Submission) -> Outcome:
        raise AssertionError("must not be called")

    async def ready() -> bool:
        return True

    app = create_app(receive, receive, ready, [], 1_000_000)  # type: ignore[arg-type]  # test doubles
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://intake") as http:
        for header in ("Bearer ", "Bearer x", "Bearer dev-token"):
            response = await http.post(
                "/v1/applications", content=b"{}", headers={"Authorization": header, "Content-Type": "application/json"}
            )
            assert response.status_code == 401


def test_a_configured_token_that_could_never_be_presented_is_refused_at_start() -> None:
    async def nothing(*_: object) -> None:
        raise AssertionError

    with pytest.raises(ValueError, match="not RFC 6750 b64tokens"):
        # (ignore below) test doubles
        create_app(nothing, nothing, nothing, ["good-token", "bad token with spaces"], 100)  # type: ignore[arg-type]
