"""CloudEvents 1.0 over Kafka, binary content mode.

The event body is the Kafka value (JSON); the CloudEvents attributes are Kafka headers named
`ce_<attribute>`, and `datacontenttype` is the `content-type` header (CloudEvents Kafka protocol
binding, section 3.2). Two extension attributes tie a conversation together: `correlationid`
(the id of the event that started it: the submission) and `causationid` (the event that caused
this one).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from shared.events import Event

SPECVERSION = "1.0"
CONTENT_TYPE = "application/json"

Headers = list[tuple[str, bytes]]


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


def from_headers(headers: Headers | tuple[tuple[str, bytes], ...] | None) -> Attributes | None:
    """The CloudEvents attributes of a Kafka record, or None when it carries none (or is incomplete)."""
    values: dict[str, str] = {}
    for name, raw in headers or ():
        try:
            values[name.lower()] = raw.decode() if raw is not None else ""
        except UnicodeDecodeError:
            continue
    required = ("ce_id", "ce_source", "ce_type", "ce_specversion")
    if not all(values.get(k) for k in required):
        return None
    return Attributes(
        id=values["ce_id"],
        source=values["ce_source"],
        type=values["ce_type"],
        specversion=values["ce_specversion"],
        time=values.get("ce_time"),
        subject=values.get("ce_subject"),
        datacontenttype=values.get("content-type"),
        correlationid=values.get("ce_correlationid"),
        causationid=values.get("ce_causationid"),
    )
