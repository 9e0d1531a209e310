"""The public HTTP intake: agency portals POST applications as JSON (OpenAPI at /docs, /openapi.json)."""

import hmac
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import structlog
from fastapi import Depends, FastAPI, HTTPException, Request, status
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from opentelemetry.trace import SpanKind
from pydantic import BaseModel
from starlette.types import ASGIApp, Message, Scope, Send
from starlette.types import Receive as Receive_

from services.intake.handlers import Outcome
from shared.events import ApplicationSubmitted, AssessmentSubmitted, FieldError
from shared.tracing import context_from, span

log = structlog.get_logger("intake.http")

REF = "#/components/schemas/{model}"
Receive = Callable[[bytes], Awaitable[Outcome]]
Assess = Callable[[bytes], Awaitable[list[FieldError]]]
Ready = Callable[[], Awaitable[bool]]


class Accepted(BaseModel):
    application_id: str
    status: str


class Rejected(BaseModel):
    application_id: str | None
    status: str
    rejection_id: str | None
    errors: list[FieldError]


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
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as error:
            log.error("request failed", path=scope.get("path"), error_type=type(error).__name__)
            if not started:
                await JSONResponse({"detail": "internal error"}, status_code=500)(scope, receive, send)


def create_app(receive: Receive, assess: Assess, ready: Ready, tokens: list[str], max_body_bytes: int) -> FastAPI:
    app = FastAPI(
        title="clustergrants intake",
        version="1",
        description="Submit applications to innovation-cluster funding schemes. "
        "Outcomes follow as events on the Kafka topics and as notifications.",
    )
    app.add_middleware(NoLeakOnError)
    bearer = HTTPBearer(auto_error=False)

    def authorised(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> None:
        presented = credentials.credentials if credentials else ""
        if not presented or not any(hmac.compare_digest(presented, t) for t in tokens):
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED, "a valid bearer token is required", headers={"WWW-Authenticate": "Bearer"}
            )

    async def bounded_body(request: Request) -> bytes:
        raw = await request.body()
        if len(raw) > max_body_bytes:
            raise HTTPException(status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, f"body larger than {max_body_bytes} bytes")
        return raw

    @app.post(
        "/v1/applications",
        status_code=status.HTTP_202_ACCEPTED,
        response_model=Accepted,
        responses={422: {"model": Rejected, "description": "Every error in the submission."}},
        dependencies=[Depends(authorised)],
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": ApplicationSubmitted.model_json_schema(ref_template=REF)}},
            }
        },
        summary="Submit an application",
    )
    async def submit(request: Request) -> Any:
        raw = await bounded_body(request)
        with span("POST /v1/applications", context_from(dict(request.headers)), SpanKind.SERVER):
            outcome = await receive(raw)
        if outcome.status == "rejected":
            body = Rejected(
                application_id=outcome.application_id,
                status="rejected",
                rejection_id=outcome.rejection_id,
                errors=outcome.errors,
            )
            code = status.HTTP_409_CONFLICT if outcome.errors[0].type == "application_id_conflict" else 422
            return JSONResponse(body.model_dump(mode="json"), status_code=code)
        assert outcome.application_id is not None
        return Accepted(application_id=outcome.application_id, status=outcome.status)

    @app.post(
        "/v1/assessments",
        status_code=status.HTTP_202_ACCEPTED,
        responses={422: {"model": Rejected, "description": "Every error in the assessment."}},
        dependencies=[Depends(authorised)],
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": AssessmentSubmitted.model_json_schema(ref_template=REF)}},
            }
        },
        summary="Submit an assessor's scores for an application in a competitive call",
    )
    async def submit_assessment(request: Request) -> Any:
        raw = await bounded_body(request)
        with span("POST /v1/assessments", context_from(dict(request.headers)), SpanKind.SERVER):
            errors = await assess(raw)
        if errors:
            body = Rejected(application_id=None, status="rejected", rejection_id=None, errors=errors)
            return JSONResponse(body.model_dump(mode="json"), status_code=422)
        return {"status": "accepted"}

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "up"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        ok = await ready()
        return JSONResponse({"status": "ready" if ok else "not ready"}, status_code=200 if ok else 503)

    return app
