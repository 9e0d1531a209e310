"""The HTTP intake's edges: credentials, body size, and errors that never leak the request body."""

from __future__ import annotations

import httpx
import pytest

from services.intake.handlers import Outcome
from services.intake.http import create_app
from shared.events import FieldError

pytestmark = pytest.mark.unit


async def ready() -> bool:
    return True


async def no_assessments(raw: bytes) -> list[FieldError]:
    return []


def client(receive) -> httpx.AsyncClient:  # type: ignore[no-untyped-def]
    app = create_app(receive, no_assessments, ready, ["token-a", "token-b"], max_body_bytes=100)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://intake")


async def test_credentials_are_required_and_checked() -> None:
    async def received(raw: bytes) -> Outcome:
        return Outcome("received", "A-1", [])

    async with client(received) as http:
        assert (await http.post("/v1/applications", content=b"{}")).status_code == 401
        wrong = await http.post("/v1/applications", content=b"{}", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
        ok = await http.post("/v1/applications", content=b"{}", headers={"Authorization": "Bearer token-b"})
        assert ok.status_code == 202 and ok.json() == {"application_id": "A-1", "status": "received"}
        big = await http.post("/v1/applications", content=b"x" * 101, headers={"Authorization": "Bearer token-a"})
        assert big.status_code == 413


async def test_an_unexpected_error_answers_500_without_quoting_the_body(capsys: pytest.CaptureFixture[str]) -> None:
    async def broken(raw: bytes) -> Outcome:
        raise ValueError(f"cannot handle {raw!r}")

    async with client(broken) as http:
        response = await http.post(
            "/v1/applications", content=b'{"email": "secret.person@example.org"}', headers={"Authorization": "Bearer token-a"}
        )
    assert response.status_code == 500 and response.json() == {"detail": "internal error"}
    captured = capsys.readouterr()
    assert "request failed" in captured.out + captured.err
    assert "secret.person" not in captured.out + captured.err
