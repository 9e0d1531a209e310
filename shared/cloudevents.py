"""CloudEvents 1.0 over Kafka: binary content mode out, binary and structured mode in.

Out: the event body is the Kafka value (JSON); the attributes travel as Kafka headers named
`ce_<attribute>`, and `datacontenttype` is the `content-type` header (CloudEvents Kafka protocol
binding, section 3.2). Two extension attributes tie a conversation together: `correlationid` (the
id of the event that started it: the submission) and `causationid` (the event that caused this one).

In: a record is read either way the binding allows. Structured mode (`content-type:
application/cloudevents+json`) carries the attributes and `data` in one JSON object in the value.
Every attribute is checked as the specification states it (`specversion` 1.0, `id` and `type`
non-empty, `source` a URI-reference, `time` RFC 3339) and anything ambiguous (a header given twice,
a header value that is not UTF-8, a JSON key given twice) is refused with its own reason: an event's
identity is its `(source, id)`, and it must never depend on which of two copies a reader picked.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shared.events import Event

SPECVERSION = "1.0"
CONTENT_TYPE = "application/json"
STRUCTURED_CONTENT_TYPE = "application/cloudevents+json"

Headers = list[tuple[str, bytes]]
RawHeaders = Sequence[tuple[str, bytes | None]]

MAX_ID = 256
MAX_SOURCE = 1024
MAX_TEXT = 1024

# RFC 3986 URI-reference: only these characters, and '%' only as a complete escape.
_URI_REFERENCE = re.compile(r"^(?:[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=]|%[0-9A-Fa-f]{2})+$")
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:[Zz]|[+-]\d{2}:\d{2})$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_REQUIRED = ("id", "source", "type", "specversion")
_KNOWN = frozenset(("id", "source", "type", "specversion", "time", "subject", "correlationid", "causationid"))


@dataclass(frozen=True)
class Attributes:
    id: str
    source: str
    type: str
    specversion: str = SPECVERSION
    time: str | None = None
    subject: str | None = None
    datacontenttype: str | None = CONTENT_TYPE
    correlationid: str | None = None
    causationid: str | None = None

    @property
    def identity(self) -> tuple[str, str]:
        """What makes the event unique (CloudEvents 1.0, 'id'): the source and the id together."""
        return (self.source, self.id)


class InvalidEnvelope(Exception):
    """The record is not a readable CloudEvent. `reason` is a stable machine-readable code."""

    def __init__(self, reason: str, detail: str, loc: Sequence[str | int] = ()) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.loc = list(loc)


@dataclass(frozen=True)
class Envelope:
    """A CloudEvent read off a record: its attributes and its data as JSON bytes."""

    attributes: Attributes
    data: bytes
    mode: str  # "binary" or "structured"


def new_event_id() -> str:
    return str(uuid.uuid4())


def attributes_for(
    event: Event,
    *,
    source: str,
    event_id: str | None = None,
    time: datetime | None = None,
    correlation_id: str | None = None,
    causation_id: str | None = None,
) -> Attributes:
    event_id = event_id or new_event_id()
    return Attributes(
        id=event_id,
        source=source,
        type=event.cloudevents_type(),
        time=(time or datetime.now(UTC)).isoformat(),
        subject=event.subject(),
        correlationid=correlation_id or event_id,
        causationid=causation_id,
    )


def to_headers(attrs: Attributes) -> Headers:
    headers: Headers = [
        ("ce_specversion", attrs.specversion.encode()),
        ("ce_id", attrs.id.encode()),
        ("ce_source", attrs.source.encode()),
        ("ce_type", attrs.type.encode()),
    ]
    optional = {
        "ce_time": attrs.time,
        "ce_subject": attrs.subject,
        "ce_correlationid": attrs.correlationid,
        "ce_causationid": attrs.causationid,
        "content-type": attrs.datacontenttype,
    }
    headers += [(name, value.encode()) for name, value in optional.items() if value is not None]
    return headers


def to_http_headers(attrs: Attributes) -> dict[str, str]:
    """The HTTP protocol binding, binary mode (webhooks): each attribute a `ce-<name>` header; the
    optional ones only when set. The body's media type is the request's own Content-Type."""
    headers = {
        "ce-specversion": attrs.specversion,
        "ce-id": attrs.id,
        "ce-type": attrs.type,
        "ce-source": attrs.source,
    }
    optional = {
        "ce-time": attrs.time,
        "ce-subject": attrs.subject,
        "ce-correlationid": attrs.correlationid,
        "ce-causationid": attrs.causationid,
    }
    headers |= {name: value for name, value in optional.items() if value}
    return headers


# --- reading ---------------------------------------------------------------------------------------


def media_type(content_type: str | None) -> str | None:
    """`application/json; charset=utf-8` -> `application/json` (lower case, parameters dropped)."""
    if content_type is None:
        return None
    return content_type.split(";", 1)[0].strip().lower()


def _checked_text(name: str, value: object, limit: int, loc: Sequence[str | int]) -> str:
    if not isinstance(value, str):
        raise InvalidEnvelope("attribute_not_a_string", f"'{name}' must be a string", loc)
    if not value:
        raise InvalidEnvelope("attribute_empty", f"'{name}' must not be empty", loc)
    if len(value) > limit:
        raise InvalidEnvelope("attribute_too_long", f"'{name}' is longer than {limit} characters", loc)
    if _CONTROL.search(value):
        raise InvalidEnvelope("attribute_control_character", f"'{name}' contains a control or bidi character", loc)
    return value


def attributes_from(values: dict[str, object], loc_of: Any) -> Attributes:
    """Attributes from their name -> value map (header or JSON), checked as CloudEvents 1.0 states."""
    missing = [name for name in _REQUIRED if values.get(name) in (None, "")]
    if missing:
        raise InvalidEnvelope("attribute_missing", f"missing {', '.join(missing)}", loc_of(missing[0]))
    specversion = values["specversion"]
    if specversion != SPECVERSION:
        raise InvalidEnvelope(
            "specversion_unsupported", f"specversion {str(specversion)[:20]!r}; only 1.0", loc_of("specversion")
        )
    event_id = _checked_text("id", values["id"], MAX_ID, loc_of("id"))
    source = _checked_text("source", values["source"], MAX_SOURCE, loc_of("source"))
    if not _URI_REFERENCE.match(source):
        raise InvalidEnvelope("source_not_uri_reference", "'source' is not a URI-reference (RFC 3986)", loc_of("source"))
    event_type = _checked_text("type", values["type"], MAX_TEXT, loc_of("type"))
    time = values.get("time")
    if time is not None:
        time = _checked_text("time", time, 64, loc_of("time"))
        if not _RFC3339.match(time):
            raise InvalidEnvelope("time_not_rfc3339", "'time' is not an RFC 3339 timestamp", loc_of("time"))
        try:
            datetime.fromisoformat(time.upper())
        except ValueError:
            raise InvalidEnvelope("time_not_rfc3339", "'time' is not a valid date and time", loc_of("time")) from None
    optional = {
        name: _checked_text(name, values[name], MAX_TEXT, loc_of(name))
        for name in ("subject", "correlationid", "causationid")
        if values.get(name) is not None
    }
    return Attributes(
        id=event_id,
        source=source,
        type=event_type,
        specversion=SPECVERSION,
        time=time,
        subject=optional.get("subject"),
        correlationid=optional.get("correlationid"),
        causationid=optional.get("causationid"),
    )


def has_cloudevents_headers(headers: RawHeaders) -> bool:
    return any(name.lower().startswith("ce_") for name, _ in headers)


def content_type_of(headers: RawHeaders) -> str | None:
    """The record's `content-type` header; refused when given twice or not UTF-8."""
    found = [value for name, value in headers if name.lower() == "content-type"]
    if len(found) > 1:
        raise InvalidEnvelope("header_duplicated", "'content-type' is given more than once", ["headers", "content-type"])
    if not found or found[0] is None:
        return None
    try:
        return found[0].decode()
    except UnicodeDecodeError:
        raise InvalidEnvelope("header_not_utf8", "'content-type' is not UTF-8", ["headers", "content-type"]) from None


def read_binary(headers: RawHeaders, value: bytes | None) -> Envelope:
    """Binary mode: attributes from `ce_*` headers, data = the value."""
    values: dict[str, object] = {}
    for name, raw in headers:
        lowered = name.lower()
        if not lowered.startswith("ce_"):
            continue  # other headers are not ours to judge (traceparent is read by tracing)
        attribute = lowered[3:]
        if attribute in values:
            raise InvalidEnvelope("header_duplicated", f"'{lowered}' is given more than once", ["headers", lowered])
        if raw is None:
            values[attribute] = None
            continue
        try:
            values[attribute] = raw.decode()
        except UnicodeDecodeError:
            raise InvalidEnvelope("header_not_utf8", f"'{lowered}' is not UTF-8", ["headers", lowered]) from None
    attributes = attributes_from(values, lambda name: ["headers", f"ce_{name}"])
    content_type = content_type_of(headers)
    if content_type is not None and media_type(content_type) != CONTENT_TYPE:
        raise InvalidEnvelope("content_type_unsupported", "the data must be application/json", ["headers", "content-type"])
    if value is None:
        raise InvalidEnvelope("value_missing", "the record has no value (a tombstone)", ["value"])
    return Envelope(
        attributes=Attributes(**{**attributes.__dict__, "datacontenttype": content_type or CONTENT_TYPE}),
        data=value,
        mode="binary",
    )


def _refuse_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, val in pairs:
        if key in result:
            raise InvalidEnvelope("json_duplicate_key", f"key {key[:40]!r} appears more than once", ["value"])
        result[key] = val
    return result


def loads_strict(raw: bytes | str) -> Any:
    """JSON with every key unique (RFC 8259 leaves duplicates to the reader: we refuse them)."""
    try:
        return json.loads(raw, object_pairs_hook=_refuse_duplicate_keys)
    except InvalidEnvelope:
        raise
    except (ValueError, RecursionError) as error:
        raise InvalidEnvelope("json_invalid", f"the value is not JSON ({type(error).__name__})", ["value"]) from None


def read_structured(value: bytes | None) -> Envelope:
    """Structured mode: one JSON object with the attributes and `data` (or `data_base64`)."""
    if value is None:
        raise InvalidEnvelope("value_missing", "the record has no value (a tombstone)", ["value"])
    document = loads_strict(value)
    if not isinstance(document, dict):
        raise InvalidEnvelope("envelope_not_object", "a structured CloudEvent must be a JSON object", ["value"])
    attributes = attributes_from({k: v for k, v in document.items() if k in _KNOWN}, lambda name: ["value", name])
    datacontenttype = document.get("datacontenttype")
    if datacontenttype is not None and (not isinstance(datacontenttype, str) or media_type(datacontenttype) != CONTENT_TYPE):
        raise InvalidEnvelope("content_type_unsupported", "the data must be application/json", ["value", "datacontenttype"])
    if "data" in document and "data_base64" in document:
        raise InvalidEnvelope("data_ambiguous", "both 'data' and 'data_base64' are given", ["value"])
    if "data_base64" in document:
        encoded = document["data_base64"]
        if not isinstance(encoded, str):
            raise InvalidEnvelope("data_base64_invalid", "'data_base64' must be a string", ["value", "data_base64"])
        try:
            data = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidEnvelope("data_base64_invalid", "'data_base64' is not base64", ["value", "data_base64"]) from None
    elif "data" in document:
        data = json.dumps(document["data"], ensure_ascii=False, allow_nan=False).encode()
    else:
        raise InvalidEnvelope("data_missing", "the event carries no data", ["value", "data"])
    return Envelope(
        attributes=Attributes(**{**attributes.__dict__, "datacontenttype": datacontenttype or CONTENT_TYPE}),
        data=data,
        mode="structured",
    )


def read_envelope(headers: RawHeaders, value: bytes | None) -> Envelope:
    """The CloudEvent a record carries, in whichever content mode it uses; InvalidEnvelope if none."""
    content_type = content_type_of(headers)
    if media_type(content_type) == STRUCTURED_CONTENT_TYPE:
        if has_cloudevents_headers(headers):
            raise InvalidEnvelope("mode_ambiguous", "structured mode with ce_ headers as well", ["headers"])
        return read_structured(value)
    return read_binary(headers, value)


def from_headers(headers: Iterable[tuple[str, bytes | None]] | None) -> Attributes | None:
    """The binary-mode attributes of a record, or None where it carries no valid ones (read-only tools)."""
    try:
        return read_binary(list(headers or ()), b"").attributes
    except InvalidEnvelope:
        return None


def portal_headers(event_type: type[Event], *, source: str, event_id: str | None = None, subject: str | None = None) -> Headers:
    """The binary-mode headers a portal puts on what it publishes (submissions, assessments): the data
    is the portal's own JSON, so only the attributes are built here."""
    event_id = event_id or new_event_id()
    return to_headers(
        Attributes(
            id=event_id,
            source=source,
            type=event_type.cloudevents_type(),
            time=datetime.now(UTC).isoformat(),
            subject=subject,
            correlationid=event_id,
        )
    )
