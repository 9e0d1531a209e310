"""The HTTP intake refuses every request without valid credentials, before reading or storing anything."""

from __future__ import annotations

import httpx
import pytest

from services.intake.handlers import Outcome
from services.intake.http import create_app

pytestmark = pytest.mark.unit

TOKENS = ["portal-a-token-0123456789", "portal-b-token-9876543210"]


def client() -> tuple[httpx.AsyncClient, list[bytes]]:
    seen: list[bytes] = []

    async def receive(raw: bytes) -> Outcome:
        seen.append(raw)
        return Outcome("received", "APP-1", [])

    async def assess(raw: bytes) -> list:  # type: ignore[type-arg]
        seen.append(raw)
        return []

    async def ready() -> bool:
        return True

    app = create_app(receive, assess, ready, TOKENS, 1_000_000)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://intake"), seen


@pytest.mark.parametrize("path", ["/v1/applications", "/v1/assessments"])
@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Bearer wrong",
        f"Basic {TOKENS[0]}",
        f"bearer{TOKENS[0]}",
        f"Bearer {TOKENS[0]}x",
        f"Bearer {TOKENS[0][:-1]}",
        f"Bearer {TOKENS[0].upper()}",
        f"Bearer {TOKENS[0]},{TOKENS[1]}",
        "Bearer dev-token",
    ],
)
async def test_requests_without_a_valid_bearer_token_are_refused(path: str, authorization: str | None) -> None:
    http, seen = client()
    headers = {"Content-Type": "application/json"}
    if authorization is not None:
        headers["Authorization"] = authorization
    async with http:
        response = await http.post(path, content=b'{"application_id": "APP-1"}', headers=headers)
    assert response.status_code in (401, 403), response.text
    assert response.headers.get("www-authenticate", "").lower().startswith("bearer") or response.status_code == 403
    assert seen == [], "nothing is handled for an unauthenticated request"


@pytest.mark.parametrize("token", TOKENS)
async def test_each_configured_token_is_accepted(token: str) -> None:
    http, seen = client()
    async with http:
        response = await http.post(
            "/v1/applications", content=b"{}", headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        )
    assert response.status_code == 202 and seen == [b"{}"]


async def test_no_configured_tokens_refuses_everyone() -> None:
    async def receive(raw: bytes) -> Outcome:
        raise AssertionError("must not be called")

    async def ready() -> bool:
        return True

    app = create_app(receive, receive, ready, [], 1_000_000)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://intake") as http:
        for header in ("Bearer ", "Bearer x", "Bearer dev-token"):
            response = await http.post("/v1/applications", content=b"{}", headers={"Authorization": header})
            assert response.status_code in (401, 403)
