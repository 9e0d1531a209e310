"""The OpenAPI 3.1 document of the HTTP intake, written out rather than inferred.

Every schema is a component (`#/components/schemas/...`, generated from the pydantic models with
that ref template, so every `$ref` resolves), every answer an operation can give is documented
with its body and headers, and every example is a real, valid instance of its schema
(tests/unit/test_intake_openapi.py validates them against the schemas, references resolved).
"""

from __future__ import annotations

import copy
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from pydantic.json_schema import models_json_schema

from services.intake.domain import DEFAULT_POLICY, SUBMITTED_TYPE, SubmissionPolicy
from shared.events import ApplicationSubmitted, AssessmentSubmitted, FieldError

REF = "#/components/schemas/{model}"


class _Answer(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Accepted(_Answer):
    """The application was received (or had been, with this same content: nothing is published twice)."""

    application_id: str
    status: Literal["received", "duplicate"]


class Rejected(_Answer):
    """The submission was refused; the rejection was published on the rejected topic with this id."""

    status: Literal["rejected"]
    application_id: str | None = Field(description="The application id, when it could be read (never for a conflict).")
    rejection_id: str | None = Field(description="Id of the published ApplicationRejected event.")
    conflicts_with: str | None = Field(
        default=None, description="409: the id already received with different content (that application is unaffected)."
    )
    errors: list[FieldError] = Field(min_length=1)


class Refused(_Answer):
    """Nothing was read, stored or published (credentials, media type, size, availability, unknown id)."""

    status: Literal["refused"]
    errors: list[FieldError] = Field(min_length=1)


class AssessmentAccepted(_Answer):
    status: Literal["accepted"]


class ApplicationStatus(_Answer):
    """An application intake received: what a portal may check after a timeout."""

    application_id: str
    status: Literal["received"]
    scheme: str
    channel: Literal["http", "kafka"]
    received_at: AwareDatetime


EXAMPLE_APPLICATION: dict[str, Any] = {
    "application_id": "TTC-2012-0042",
    "scheme": "ttc.innovation-voucher",
    "submitted_at": "2012-04-02T09:00:00+02:00",
    "language": "de",
    "applicant": {
        "organisation_name": "MedTech Aachen GmbH",
        "country": "DE",
        "region": "Aachen",
        "is_cluster_organisation": False,
        "legal_person": True,
        "is_sme": True,
    },
    "contact": {"name": "Anna Schmitz", "email": "anna.schmitz@example.org"},
    "sectors": ["life-sciences"],
    "funding": {
        "currency": "EUR",
        "years": [
            {
                "year": 2012,
                "eligible_costs": {"amount_minor": 1_000_000, "currency": "EUR"},
                "requested": {"amount_minor": 500_000, "currency": "EUR"},
            }
        ],
    },
}
EXAMPLE_CLOUDEVENT: dict[str, Any] = {
    "specversion": "1.0",
    "id": "3f0b9d2e-6c1a-4f6e-9a57-1d2c3b4a5f60",
    "source": "https://portal.example.org/ttc",
    "type": SUBMITTED_TYPE,
    "time": "2012-04-02T07:00:05Z",
    "datacontenttype": "application/json",
    "data": EXAMPLE_APPLICATION,
}
EXAMPLE_ASSESSMENT: dict[str, Any] = {
    "application_id": "S3-2018-0007",
    "assessment_id": "S3-2018-0007-A1",
    "call_id": "s3-2018",
    "assessor_id": "assessor-17",
    "scores": {"relevance": 4, "quality": 3},
    "submitted_at": "2018-05-14T16:20:00+02:00",
}

STRUCTURED_CLOUDEVENT: dict[str, Any] = {
    "title": "StructuredCloudEvent",
    "description": "CloudEvents 1.0, JSON event format (structured content mode): the attributes and, in `data`, "
    "the application. `data_base64` (the application's JSON, base64) may stand in for `data`.",
    "type": "object",
    "required": ["specversion", "id", "source", "type"],
    "properties": {
        "specversion": {"const": "1.0"},
        "id": {"type": "string", "minLength": 1, "description": "Unique per source."},
        "source": {"type": "string", "format": "uri-reference", "minLength": 1, "description": "The portal."},
        "type": {"const": SUBMITTED_TYPE},
        "time": {"type": "string", "format": "date-time", "description": "RFC 3339."},
        "subject": {"type": "string", "minLength": 1},
        "datacontenttype": {"type": "string", "pattern": "^application/json(;.*)?$"},
        "dataschema": {"type": "string", "format": "uri"},
        "data": {"$ref": "#/components/schemas/ApplicationSubmitted"},
        "data_base64": {"type": "string", "contentEncoding": "base64", "contentMediaType": "application/json"},
    },
    "oneOf": [{"required": ["data"]}, {"required": ["data_base64"]}],
    "additionalProperties": {
        "description": "Extension attributes: lower-case letters and digits, at most 20.",
        "type": ["string", "integer", "boolean"],
    },
    "propertyNames": {"pattern": "^[a-z0-9]{1,20}$|^data_base64$"},
}


def _error(loc: list[str | int], kind: str, message: str) -> dict[str, Any]:
    return {"loc": loc, "type": kind, "message": message}


def _refused(loc: list[str | int], kind: str, message: str) -> dict[str, Any]:
    return {"status": "refused", "errors": [_error(loc, kind, message)]}


def _json(schema: str, examples: dict[str, tuple[str, Any]]) -> dict[str, Any]:
    return {
        "application/json": {
            "schema": {"$ref": REF.format(model=schema)},
            "examples": {name: {"summary": summary, "value": value} for name, (summary, value) in examples.items()},
        }
    }


def _fix_bounds(node: Any) -> None:
    """pydantic writes the `ge` of an annotated constraint as is; JSON Schema calls it `minimum`."""
    if isinstance(node, dict):
        if "ge" in node and "minimum" not in node:
            node["minimum"] = node.pop("ge")
        for value in node.values():
            _fix_bounds(value)
    elif isinstance(node, list):
        for value in node:
            _fix_bounds(value)


def components(policy: SubmissionPolicy = DEFAULT_POLICY) -> dict[str, Any]:
    """Every schema the document names, under #/components/schemas."""
    models: list[tuple[type[BaseModel], Literal["validation", "serialization"]]] = [
        (ApplicationSubmitted, "validation"),
        (AssessmentSubmitted, "validation"),
        (Accepted, "serialization"),
        (Rejected, "serialization"),
        (Refused, "serialization"),
        (AssessmentAccepted, "serialization"),
        (ApplicationStatus, "serialization"),
        (FieldError, "serialization"),
    ]
    _, schemas = models_json_schema(models, ref_template=REF)
    defs: dict[str, Any] = copy.deepcopy(schemas["$defs"])
    _fix_bounds(defs)
    amount = defs["Money"]["properties"]["amount_minor"]
    amount["maximum"] = policy.max_amount_minor
    amount["description"] += f" At most {policy.max_amount_minor} (INTAKE_MAX_AMOUNT_MINOR)."
    skew = int(policy.max_clock_skew.total_seconds())
    defs["ApplicationSubmitted"]["properties"]["submitted_at"]["description"] += (
        f" Not later than the intake's clock plus {skew} s (INTAKE_MAX_CLOCK_SKEW_S)."
    )
    defs["StructuredCloudEvent"] = STRUCTURED_CLOUDEVENT
    return defs


def openapi_document(max_body_bytes: int, policy: SubmissionPolicy = DEFAULT_POLICY, retry_after_s: int = 5) -> dict[str, Any]:
    unauthorised = {
        "description": "No valid bearer token: missing, malformed, several, or not one of INTAKE_API_TOKENS "
        "(one answer for all). Nothing was read.",
        "headers": {"WWW-Authenticate": {"schema": {"type": "string", "const": "Bearer"}}},
        "content": _json(
            "Refused",
            {
                "unauthorized": (
                    "Bad credentials",
                    _refused(["header", "Authorization"], "unauthorized", "a valid bearer token is required"),
                )
            },
        ),
    }
    unavailable = {
        "description": "PostgreSQL cannot be reached: nothing was stored or published. Send the same request again "
        "after Retry-After seconds (the same application id with the same content is answered once).",
        "headers": {"Retry-After": {"schema": {"type": "integer", "minimum": 0}, "description": "Seconds."}},
        "content": _json(
            "Refused",
            {
                "unavailable": (
                    "Database away",
                    _refused(
                        [],
                        "service_unavailable",
                        f"the intake cannot store submissions right now; send it again in {retry_after_s} s",
                    ),
                )
            },
        ),
    }
    too_large = {
        "description": f"The body is larger than {max_body_bytes} bytes (INTAKE_MAX_BODY_BYTES): by Content-Length, "
        "before reading, or counted while a chunked body streams. The connection is closed.",
        "content": _json(
            "Refused",
            {
                "too_large": (
                    "Body too large",
                    _refused(["body"], "body_too_large", f"the body must be at most {max_body_bytes} bytes"),
                )
            },
        ),
    }

    def unsupported(types: str) -> dict[str, Any]:
        return {
            "description": f"Content-Type is not {types} (a charset parameter, if any, must be utf-8).",
            "content": _json(
                "Refused",
                {
                    "media_type": (
                        "Another media type",
                        _refused(["header", "Content-Type"], "media_type_unsupported", f"the body must be {types}"),
                    )
                },
            ),
        }

    ce_headers = [
        {
            "name": f"ce-{name}",
            "in": "header",
            "required": False,
            "description": f"CloudEvents binary mode: {text} If any ce-* header is sent, specversion, id, source and "
            "type are required; values are percent-encoded UTF-8.",
            "schema": schema,
        }
        for name, text, schema in (
            ("specversion", "must be 1.0.", {"type": "string", "const": "1.0"}),
            ("id", "the event id, unique per source.", {"type": "string", "minLength": 1}),
            ("source", "a URI-reference naming the portal.", {"type": "string", "format": "uri-reference"}),
            ("type", f"must be {SUBMITTED_TYPE}.", {"type": "string", "const": SUBMITTED_TYPE}),
            ("time", "RFC 3339.", {"type": "string", "format": "date-time"}),
        )
    ]
    invalid_example = {
        "status": "rejected",
        "application_id": "TTC-2012-0042",
        "rejection_id": "0b6f3c8e-8d0e-4c57-b1c9-5f2d7a0e9c11",
        "conflicts_with": None,
        "errors": [
            _error(["submitted_at"], "missing", "Field required"),
            _error(["funding", "years", 0, "requested", "amount_minor"], "money_negative", "amount_minor must not be negative"),
            _error(["applicant", "organisation_name"], "string_bidi_control", "text must not contain bidirectional overrides"),
        ],
    }
    conflict_example = {
        "status": "rejected",
        "application_id": None,
        "rejection_id": "5c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f",
        "conflicts_with": "TTC-2012-0042",
        "errors": [
            _error(
                ["application_id"],
                "application_id_conflict",
                "an application with this id was already received with different content",
            )
        ],
    }
    submit = {
        "operationId": "submitApplication",
        "summary": "Submit an application",
        "description": "The body is the application (`application/json`, optionally with CloudEvents binary-mode "
        "`ce-*` headers) or a CloudEvent in structured mode (`application/cloudevents+json`) with the application in "
        "`data`. The same application id with the same content is answered 202 `duplicate`, once received. Duplicate "
        "JSON keys, control characters and bidirectional overrides in text are refused with their own error types.",
        "parameters": ce_headers,
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {"$ref": REF.format(model="ApplicationSubmitted")},
                    "examples": {"voucher": {"summary": "A TTC innovation voucher", "value": EXAMPLE_APPLICATION}},
                },
                "application/cloudevents+json": {
                    "schema": {"$ref": REF.format(model="StructuredCloudEvent")},
                    "examples": {"structured": {"summary": "The same as a CloudEvent", "value": EXAMPLE_CLOUDEVENT}},
                },
            },
        },
        "responses": {
            "202": {
                "description": "Received (published as ApplicationReceived), or received before with the same content.",
                "content": _json(
                    "Accepted",
                    {
                        "received": ("Received", {"application_id": "TTC-2012-0042", "status": "received"}),
                        "duplicate": ("Sent again, same content", {"application_id": "TTC-2012-0042", "status": "duplicate"}),
                    },
                ),
            },
            "401": unauthorised,
            "409": {
                "description": "This application id was already received with different content. The resubmission "
                "is rejected under its own rejection id (published, never e-mailed); the received one is unaffected.",
                "content": _json("Rejected", {"conflict": ("Id taken", conflict_example)}),
            },
            "413": too_large,
            "415": unsupported("application/json or application/cloudevents+json"),
            "422": {
                "description": "Every error in the submission, each with loc and type (published as ApplicationRejected).",
                "content": _json("Rejected", {"invalid": ("Several errors", invalid_example)}),
            },
            "503": unavailable,
        },
    }
    status = {
        "operationId": "getApplication",
        "summary": "Check that an application was received",
        "parameters": [
            {
                "name": "application_id",
                "in": "path",
                "required": True,
                "schema": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"},
            }
        ],
        "responses": {
            "200": {
                "description": "Received.",
                "content": _json(
                    "ApplicationStatus",
                    {
                        "received": (
                            "Received",
                            {
                                "application_id": "TTC-2012-0042",
                                "status": "received",
                                "scheme": "ttc.innovation-voucher",
                                "channel": "http",
                                "received_at": "2012-04-02T07:00:06Z",
                            },
                        )
                    },
                ),
            },
            "401": unauthorised,
            "404": {
                "description": "No application with this id was received (it may have been rejected).",
                "content": _json(
                    "Refused",
                    {
                        "unknown": (
                            "Unknown id",
                            _refused(["path", "application_id"], "not_found", "no application with this id was received"),
                        )
                    },
                ),
            },
            "503": unavailable,
        },
    }
    assess = {
        "operationId": "submitAssessment",
        "summary": "Submit an assessor's scores for an application in a competitive call",
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {"$ref": REF.format(model="AssessmentSubmitted")},
                    "examples": {"scores": {"summary": "Two criteria", "value": EXAMPLE_ASSESSMENT}},
                }
            },
        },
        "responses": {
            "202": {
                "description": "Accepted.",
                "content": _json("AssessmentAccepted", {"accepted": ("Accepted", {"status": "accepted"})}),
            },
            "401": unauthorised,
            "413": too_large,
            "415": unsupported("application/json"),
            "422": {
                "description": "Every error in the assessment.",
                "content": _json(
                    "Rejected",
                    {
                        "invalid": (
                            "A score out of range",
                            {
                                "status": "rejected",
                                "application_id": None,
                                "rejection_id": None,
                                "conflicts_with": None,
                                "errors": [
                                    _error(["scores", "quality"], "less_than_equal", "Input should be less than or equal to 1000")
                                ],
                            },
                        )
                    },
                ),
            },
            "503": unavailable,
        },
    }
    return {
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://spec.openapis.org/oas/3.1/dialect/base",
        "info": {
            "title": "clustergrants intake",
            "version": "1",
            "description": "Submit applications to innovation-cluster funding schemes. Outcomes follow as events on the "
            "Kafka topics (docs/asyncapi.yaml) and as notifications.",
            "license": {"name": "EUPL-1.2", "identifier": "EUPL-1.2"},
        },
        "security": [{"bearerAuth": []}],
        "paths": {
            "/v1/applications": {"post": submit},
            "/v1/applications/{application_id}": {"get": status},
            "/v1/assessments": {"post": assess},
        },
        "components": {
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "One token per agency portal (INTAKE_API_TOKENS).",
                }
            },
            "schemas": components(policy),
        },
    }
