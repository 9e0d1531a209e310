"""The public HTTP intake: agency portals POST applications as JSON or as CloudEvents.

Every request is refused as early as it can be, with a machine-readable body (`errors`, each with
`loc` and `type`) and nothing stored or published:

1. credentials (401, one answer for every kind of bad credential), before anything is read;
2. the media type (415): `application/json`, or `application/cloudevents+json` for a CloudEvent
   in structured mode; a `charset` parameter, if any, must be utf-8;
3. the size (413): a `Content-Length` over the limit is refused before one byte of the body is
   read; a chunked body is counted while it streams and reading stops at the limit, so the
   process never holds more than `max_body_bytes` of it (the connection is then closed);
4. PostgreSQL away (503 with `Retry-After`): nothing was stored, send it again later.

Then the submission itself: 202, or 422 / 409 with every error (published as a rejection).
OpenAPI 3.1 at /openapi.json (written out in `services/intake/openapi.py`), Swagger UI at /docs
from the `fastapi-offline` package's files: no CDN, under a Content-Security-Policy.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any
from urllib.parse import unquote_to_bytes

import structlog
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from opentelemetry.trace import SpanKind
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Scope, Send
from starlette.types import Receive as Receive_

from services.intake.domain import APPLICATION_ID, DEFAULT_POLICY, SubmissionPolicy, cloudevent_errors, media_type
from services.intake.handlers import Envelope, Outcome, Submission
from services.intake.openapi import (
    ApplicationStatus,
    Refused,
    Rejected,
    openapi_document,
)
from shared.delivery import is_transient
from shared.events import FieldError
from shared.tracing import context_from, span

log = structlog.get_logger("intake.http")

Receive = Callable[[Submission], Awaitable[Outcome]]
Assess = Callable[[bytes], Awaitable[list[FieldError]]]
Ready = Callable[[], Awaitable[bool]]
Lookup = Callable[[str], Awaitable[ApplicationStatus | None]]

JSON = "application/json"
CLOUDEVENTS_JSON = "application/cloudevents+json"
#: RFC 6750 2.1: the scheme (case-insensitive), one or more spaces, a b64token.
BEARER = re.compile(rb"bearer +([A-Za-z0-9\-._~+/]+=*)", re.IGNORECASE)
TOKEN_SYNTAX = re.compile(r"[A-Za-z0-9\-._~+/]+=*")

DOCS_STATIC = {"swagger-ui-bundle.js": "text/javascript", "swagger-ui.css": "text/css", "favicon.png": "image/png"}
DOCS_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
API_CSP = "default-src 'none'; frame-ancestors 'none'"
SWAGGER_INIT = """window.addEventListener("load", function () {
  var root = document.documentElement.getAttribute("data-root") || "";
  window.ui = SwaggerUIBundle({
    url: root + "/openapi.json",
    dom_id: "#swagger-ui",
    layout: "BaseLayout",
    deepLinking: true,
    showExtensions: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset]
  });
});
"""


#: After an early refusal, how much of what the client still sends is read and dropped, and for how long,
#: before the connection is closed (see `EarlyRefusal`).
DRAIN_MAX_BYTES = 16 * 2**20
DRAIN_MAX_S = 2.0


def refused(status_code: int, loc: list[str | int], kind: str, message: str, **headers: str) -> JSONResponse:
    body = Refused(status="refused", errors=[FieldError(loc=loc, type=kind, message=message)])
    return JSONResponse(body.model_dump(mode="json"), status_code=status_code, headers=headers)


class EarlyRefusal(JSONResponse):
    """A refusal sent before the request body was read (401, 413, 415), on a connection then closed.

    The answer goes out first, complete (it has a Content-Length); then what the client is still sending
    is read and dropped, at most DRAIN_MAX_BYTES for at most DRAIN_MAX_S, and only then is the connection
    closed: closing a socket with unread data makes the kernel reset the connection, and the client may
    lose the answer it has not read yet (web servers' "lingering close"). Nothing drained is kept.
    """

    def __init__(self, refusal: JSONResponse) -> None:
        super().__init__(None, status_code=refusal.status_code)
        self.body = refusal.body
        self.raw_headers = [h for h in refusal.raw_headers if h[0] != b"connection"] + [(b"connection", b"close")]

    async def __call__(self, scope: Scope, receive: Receive_, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        await send({"type": "http.response.body", "body": self.body, "more_body": True})
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DRAIN_MAX_S
        drained = 0
        while drained <= DRAIN_MAX_BYTES and loop.time() < deadline:
            try:
                message = await asyncio.wait_for(receive(), timeout=deadline - loop.time())
            except TimeoutError:
                break
            if message["type"] != "http.request":
                break
            drained += len(message.get("body", b""))
            if not message.get("more_body", False):
                break
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def _unauthorised() -> EarlyRefusal:
    # One answer for a missing, malformed or wrong credential: nothing tells them apart.
    return EarlyRefusal(
        refused(
            401, ["header", "Authorization"], "unauthorized", "a valid bearer token is required", **{"WWW-Authenticate": "Bearer"}
        )
    )


def _header_values(scope: Scope, name: bytes) -> list[bytes]:
    return [value for key, value in scope["headers"] if key.lower() == name]


class Credentials:
    """The portals' bearer tokens, compared in constant time (by their SHA-256, against every token)."""

    def __init__(self, tokens: list[str]) -> None:
        bad = [i for i, t in enumerate(tokens) if not TOKEN_SYNTAX.fullmatch(t)]
        if bad:
            raise ValueError(
                f"INTAKE_API_TOKENS: token(s) number {', '.join(str(i + 1) for i in bad)} are not RFC 6750 b64tokens"
            )
        self._digests = [hashlib.sha256(t.encode()).digest() for t in tokens]

    def valid(self, scope: Scope) -> bool:
        values = _header_values(scope, b"authorization")
        match = BEARER.fullmatch(values[0]) if len(values) == 1 else None
        digest = hashlib.sha256(match.group(1) if match else b"").digest()
        ok = False
        for known in self._digests:  # no early exit: the time does not depend on which token matched
            ok |= hmac.compare_digest(digest, known)
        return ok and match is not None


def _media_type(scope: Scope, allowed: frozenset[str]) -> str | EarlyRefusal:
    values = _header_values(scope, b"content-type")
    names = " or ".join(sorted(allowed))
    loc: list[str | int] = ["header", "Content-Type"]
    if len(values) != 1:
        message = "Content-Type is required" if not values else "send one Content-Type header"
        return EarlyRefusal(refused(415, loc, "media_type_unsupported", f"{message}: {names}"))
    try:
        kind, params = media_type(values[0].decode("ascii"))
    except UnicodeDecodeError:
        kind, params = "", {}
    if kind not in allowed:
        return EarlyRefusal(refused(415, loc, "media_type_unsupported", f"the body must be {names}"))
    if params.get("charset", "utf-8").lower() not in ("utf-8", "utf8"):
        return EarlyRefusal(refused(415, loc, "charset_unsupported", "the body must be UTF-8"))
    return kind


def _too_large(limit: int) -> EarlyRefusal:
    return EarlyRefusal(refused(413, ["body"], "body_too_large", f"the body must be at most {limit} bytes"))


async def read_bounded(request: Request, limit: int) -> bytes | JSONResponse:
    """The body, or 413: by Content-Length before reading, else by a running count while it streams."""
    lengths = _header_values(request.scope, b"content-length")
    if lengths:
        try:
            declared = int(lengths[0])
        except ValueError:
            declared = limit + 1  # h11 refuses this before us; never trust it here
        if declared > limit:
            return _too_large(limit)
    chunks: list[bytes] = []
    total = 0
    try:
        async for chunk in request.stream():
            if total + len(chunk) > limit:
                return _too_large(limit)  # what came so far is dropped with `chunks`
            chunks.append(chunk)
            total += len(chunk)
    except ClientDisconnect:
        return refused(400, ["body"], "body_incomplete", "the client closed the connection before the body ended")
    return b"".join(chunks)


def binary_mode_errors(scope: Scope) -> tuple[bool, list[FieldError]]:
    """CloudEvents HTTP binary mode: are there ce-* headers, and what is wrong with them. Header values
    are percent-decoded (HTTP protocol binding 3.1.3.2) and must then be UTF-8."""
    attributes: dict[str, Any] = {}
    errors: list[FieldError] = []
    for key, value in scope["headers"]:
        name = key.decode("latin-1").lower()
        if not name.startswith("ce-"):
            continue
        attribute = name[3:]
        loc: list[str | int] = ["header", name]
        if attribute in attributes:
            errors.append(FieldError(loc=loc, type="cloudevents_header_repeated", message="send each ce-* header once"))
            continue
        try:
            attributes[attribute] = unquote_to_bytes(value.decode("ascii")).decode("utf-8")
        except UnicodeDecodeError:
            errors.append(
                FieldError(loc=loc, type="cloudevents_header_encoding", message="percent-encode ce-* header values (UTF-8)")
            )
            attributes[attribute] = ""
    if not attributes:
        return False, []
    return True, errors + cloudevent_errors(attributes, lambda n: ("header", f"ce-{n}"), structured=False)


class NoLeakOnError:
    """An unexpected error answers 500 and is logged by its type only: the default ASGI error log
    would print the exception's message, which may quote the request body (personal data)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive_, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                if b"content-security-policy" not in names:
                    headers.append((b"content-security-policy", API_CSP.encode()))
                headers.append((b"x-content-type-options", b"nosniff"))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as error:
            log.error("request failed", path=scope.get("path"), error_type=type(error).__name__)
            if not started:
                await JSONResponse({"detail": "internal error"}, status_code=500)(scope, receive, send)


def create_app(
    receive: Receive,
    assess: Assess,
    ready: Ready,
    tokens: list[str],
    max_body_bytes: int,
    *,
    lookup: Lookup | None = None,
    retry_after_s: int = 5,
    request_timeout_s: float = 10.0,
    policy: SubmissionPolicy = DEFAULT_POLICY,
) -> FastAPI:
    app = FastAPI(
        title="clustergrants intake",
        version="1",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        swagger_ui_oauth2_redirect_url=None,
    )
    app.add_middleware(NoLeakOnError)
    credentials = Credentials(tokens)
    document = openapi_document(max_body_bytes, policy, retry_after_s)

    def unavailable(error: BaseException) -> JSONResponse:
        log.warning("database unavailable; asked to retry", error_type=type(error).__name__, retry_after_s=retry_after_s)
        return refused(
            503,
            [],
            "service_unavailable",
            f"the intake cannot store submissions right now; nothing was stored: send it again in {retry_after_s} s",
            **{"Retry-After": str(retry_after_s)},
        )

    async def guarded(work: Awaitable[Any]) -> Any:
        try:
            return await asyncio.wait_for(work, timeout=request_timeout_s)
        except Exception as error:
            if is_transient(error):
                return unavailable(error)
            raise

    @app.post("/v1/applications", include_in_schema=False)
    async def submit(request: Request) -> Response:
        if not credentials.valid(request.scope):
            return _unauthorised()
        kind = _media_type(request.scope, frozenset({JSON, CLOUDEVENTS_JSON}))
        if isinstance(kind, Response):
            return kind
        binary, attribute_errors = binary_mode_errors(request.scope) if kind == JSON else (False, [])
        raw = await read_bounded(request, max_body_bytes)
        if isinstance(raw, Response):
            return raw
        envelope: Envelope = "structured" if kind == CLOUDEVENTS_JSON else "binary" if binary else "plain"
        submission = Submission(raw, envelope, attribute_errors)
        with span("POST /v1/applications", context_from(dict(request.headers)), SpanKind.SERVER):
            outcome = await guarded(receive(submission))
        if isinstance(outcome, Response):
            return outcome
        if outcome.status in ("rejected", "conflict"):
            assert outcome.rejection_id is not None
            body = Rejected(
                status="rejected",
                application_id=outcome.application_id,
                rejection_id=outcome.rejection_id,
                conflicts_with=outcome.conflicts_with,
                errors=outcome.errors,
            )
            code = 409 if outcome.status == "conflict" else 422
            return JSONResponse(body.model_dump(mode="json"), status_code=code)
        assert outcome.application_id is not None
        return JSONResponse({"application_id": outcome.application_id, "status": outcome.status}, status_code=202)

    @app.get("/v1/applications/{application_id}", include_in_schema=False)
    async def status_of(request: Request, application_id: str) -> Response:
        if not credentials.valid(request.scope):
            return _unauthorised()
        found = None
        if lookup is not None and APPLICATION_ID.fullmatch(application_id):
            found = await guarded(lookup(application_id))
        if isinstance(found, Response):
            return found
        if found is None:
            return refused(404, ["path", "application_id"], "not_found", "no application with this id was received")
        return JSONResponse(found.model_dump(mode="json"))

    @app.post("/v1/assessments", include_in_schema=False)
    async def submit_assessment(request: Request) -> Response:
        if not credentials.valid(request.scope):
            return _unauthorised()
        kind = _media_type(request.scope, frozenset({JSON}))
        if isinstance(kind, Response):
            return kind
        raw = await read_bounded(request, max_body_bytes)
        if isinstance(raw, Response):
            return raw
        with span("POST /v1/assessments", context_from(dict(request.headers)), SpanKind.SERVER):
            errors = await guarded(assess(raw))
        if isinstance(errors, Response):
            return errors
        if errors:
            body = {"status": "rejected", "application_id": None, "rejection_id": None, "conflicts_with": None}
            return JSONResponse({**body, "errors": [e.model_dump(mode="json") for e in errors]}, status_code=422)
        return JSONResponse({"status": "accepted"}, status_code=202)

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi() -> JSONResponse:
        return JSONResponse(document)

    @app.get("/docs", include_in_schema=False)
    async def docs(request: Request) -> Response:
        root = str(request.scope.get("root_path", "")).replace('"', "")
        page = (
            f'<!doctype html>\n<html lang="en" data-root="{root}"><head><meta charset="utf-8">'
            f"<title>{app.title} - API</title>"
            f'<link rel="icon" type="image/png" href="{root}/docs/static/favicon.png">'
            f'<link rel="stylesheet" href="{root}/docs/static/swagger-ui.css"></head>'
            f'<body><div id="swagger-ui"></div>'
            f'<script src="{root}/docs/static/swagger-ui-bundle.js"></script>'
            f'<script src="{root}/docs/init.js"></script></body></html>\n'
        )
        return Response(page, media_type="text/html", headers=_docs_headers())

    @app.get("/docs/init.js", include_in_schema=False)
    async def docs_init() -> Response:
        return Response(SWAGGER_INIT, media_type="text/javascript", headers=_docs_headers())

    @app.get("/docs/static/{name}", include_in_schema=False)
    async def docs_static(name: str) -> Response:
        if name not in DOCS_STATIC:
            return refused(404, ["path", "name"], "not_found", "no such file")
        content = (resources.files("fastapi_offline") / "static" / name).read_bytes()
        return Response(content, media_type=DOCS_STATIC[name], headers={**_docs_headers(), "Cache-Control": "max-age=86400"})

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "up"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        ok = await ready()
        return JSONResponse({"status": "ready" if ok else "not ready"}, status_code=200 if ok else 503)

    return app


def _docs_headers() -> dict[str, str]:
    return {"Content-Security-Policy": DOCS_CSP, "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer"}
