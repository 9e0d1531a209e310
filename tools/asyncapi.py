"""Generate the AsyncAPI 3.0 document of every topic, event and service from the code.

    python -m tools.asyncapi > docs/asyncapi.yaml      (make docs)

Payload schemas come from the pydantic contracts; which service consumes which topic comes from
building each service's runtime (its real subscriptions); what each service publishes is declared
in `PUBLISHES` below, next to the code that writes its outbox. A test fails when the committed
document differs from what this prints.
"""

from __future__ import annotations

import sys
from typing import Any

import yaml
from pydantic.json_schema import models_json_schema

from shared.events import EVENTS, Event
from shared.topics import TOPIC_SPECS, Topic

#: What each service writes into its outbox (the services' handlers are the source of truth).
#: AuditRecorded: the operator commands that change a service's state write it through that
#: service's outbox (shared/audit.py).
PUBLISHES: dict[str, tuple[Topic, ...]] = {
    "intake": (
        Topic.APPLICATION_RECEIVED,
        Topic.APPLICATION_REJECTED,
        Topic.ASSESSMENT_SUBMITTED,
        Topic.FINDING_RECORDED,
        Topic.AUDIT_RECORDED,
    ),
    "eligibility": (
        Topic.ELIGIBILITY_DECIDED,
        Topic.CALL_CLOSED,
        Topic.CALL_OPENED,
        Topic.CLUSTER_EVALUATED,
        Topic.AUDIT_RECORDED,
    ),
    "budget": (Topic.GRANT_COMMITTED, Topic.GRANT_REFUSED, Topic.CEILING_RESET, Topic.GRANT_RELEASED, Topic.AUDIT_RECORDED),
    "notify": (Topic.NOTIFICATION_SENT, Topic.AUDIT_RECORDED),
    "opendata": (),
}

CLOUDEVENTS_HEADERS: dict[str, Any] = {
    "type": "object",
    "description": "CloudEvents 1.0 attributes, Kafka protocol binding, binary content mode (what the services "
    "publish). Consumers also accept structured mode: content-type application/cloudevents+json, the whole "
    "event (attributes and data) as the value. A header given twice or not UTF-8 is refused.",
    "required": ["ce_specversion", "ce_id", "ce_source", "ce_type", "content-type"],
    "properties": {
        "ce_specversion": {"type": "string", "const": "1.0"},
        "ce_id": {
            "type": "string",
            "minLength": 1,
            "maxLength": 256,
            "description": "Unique per source: the event's identity is (ce_source, ce_id), each consumer's inbox key.",
        },
        "ce_source": {
            "type": "string",
            "format": "uri-reference",
            "maxLength": 1024,
            "examples": ["/clustergrants/intake"],
            "description": "/clustergrants/<service> for what a service publishes (only that service may); a "
            "portal's own URI-reference, outside /clustergrants/, on the topics portals publish to.",
        },
        "ce_type": {"type": "string", "description": "<reverse-DNS type>.v<major version>"},
        "ce_time": {"type": "string", "format": "date-time"},
        "ce_subject": {"type": "string", "description": "What the event is about (the application id)."},
        "content-type": {"type": "string", "const": "application/json", "description": "datacontenttype"},
        "ce_correlationid": {"type": "string", "description": "Id of the event that started the conversation."},
        "ce_causationid": {"type": "string", "description": "Id of the event that caused this one."},
    },
}

DEAD_LETTER_HEADERS: dict[str, Any] = {
    "type": "object",
    "description": "The original record's headers plus where it came from and why it was parked.",
    "properties": {
        "cg_dlt_topic": {"type": "string"},
        "cg_dlt_partition": {"type": "string"},
        "cg_dlt_offset": {"type": "string"},
        "cg_dlt_group": {"type": "string", "description": "Consumer group that gave up on the record."},
        "cg_dlt_attempts": {"type": "string"},
        "cg_dlt_error_type": {"type": "string"},
        "cg_dlt_error": {"type": "string", "description": "The error, without input values."},
        "cg_dlt_parked_at": {"type": "string", "format": "date-time"},
    },
}


def _channel_id(topic: Topic) -> str:
    return topic.name.lower()


def consumers() -> dict[str, list[Topic]]:
    """Which topics each service subscribes to, read off its real runtime."""
    from services.budget.app import build as build_budget
    from services.budget.settings import BudgetSettings
    from services.eligibility.app import build as build_eligibility
    from services.eligibility.settings import EligibilitySettings
    from services.intake.app import build as build_intake
    from services.intake.settings import IntakeSettings
    from services.notify.app import build as build_notify
    from services.notify.domain import Subscriptions
    from services.notify.settings import NotifySettings
    from services.opendata.app import build as build_opendata
    from services.opendata.settings import OpenDataSettings
    from shared.runtime import ServiceRuntime

    runtimes: dict[str, ServiceRuntime[Any]] = {
        "intake": build_intake(IntakeSettings(topic_prefix=""))[0],
        "eligibility": build_eligibility(EligibilitySettings(topic_prefix="", eligibility_operator_parameters_file=None)),
        "budget": build_budget(BudgetSettings(topic_prefix="", budget_pots_file=None)),
        "notify": build_notify(NotifySettings(topic_prefix=""), Subscriptions(), None)[0],
        "opendata": build_opendata(OpenDataSettings(topic_prefix="")),
    }
    return {name: [s.topic for s in runtime.subscriptions.values()] for name, runtime in runtimes.items()}


def document() -> dict[str, Any]:
    by_topic: dict[Topic, type[Event]] = {event.topic: event for event in EVENTS}
    _, top = models_json_schema([(e, "validation") for e in EVENTS], ref_template="#/components/schemas/{model}")
    schemas: dict[str, Any] = dict(sorted(top.get("$defs", {}).items()))
    schemas["CloudEventsHeaders"] = CLOUDEVENTS_HEADERS
    schemas["DeadLetterHeaders"] = DEAD_LETTER_HEADERS

    channels: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for topic, spec in TOPIC_SPECS.items():
        event = by_topic.get(topic)
        if event is not None:
            name = event.__name__
            messages[name] = {
                "name": name,
                "title": event.cloudevents_type(),
                "summary": (event.__doc__ or name).strip().splitlines()[0],
                "contentType": "application/json",
                "headers": {"$ref": "#/components/schemas/CloudEventsHeaders"},
                "payload": {"$ref": f"#/components/schemas/{name}"},
                "bindings": {"kafka": {"key": {"type": "string", "description": f"the event's `{event.key_field}`"}}},
            }
        else:
            name = "DeadLetter"
            messages[name] = {
                "name": name,
                "title": "dead letter",
                "summary": "A record a consumer could not process, copied with its key, value and headers.",
                "headers": {"$ref": "#/components/schemas/DeadLetterHeaders"},
                "payload": {"description": "The original value, unchanged (may be any bytes)."},
            }
        channels[_channel_id(topic)] = {
            "address": topic.value,
            "description": spec.description,
            "messages": {name: {"$ref": f"#/components/messages/{name}"}},
            "bindings": {"kafka": {"partitions": spec.partitions, "topicConfiguration": {"retention.ms": spec.retention_ms}}},
        }

    operations: dict[str, Any] = {}
    for service, topics in consumers().items():
        for topic in topics:
            operations[f"{service}.receive.{_channel_id(topic)}"] = {
                "action": "receive",
                "channel": {"$ref": f"#/channels/{_channel_id(topic)}"},
                "summary": f"{service} consumes in group clustergrants.{service}",
            }
    for service, published in PUBLISHES.items():
        for topic in published:
            operations[f"{service}.send.{_channel_id(topic)}"] = {
                "action": "send",
                "channel": {"$ref": f"#/channels/{_channel_id(topic)}"},
                "summary": f"{service} publishes through its outbox",
            }
    for service in PUBLISHES:
        operations[f"{service}.send.dead_letter"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{_channel_id(Topic.DEAD_LETTER)}"},
            "summary": f"{service} parks records it cannot process",
        }

    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "clustergrants events",
            "version": "1.0.0",
            "description": "Events of the clustergrants services. Bodies are JSON; CloudEvents attributes are Kafka "
            "headers (binary mode). Money is integer minor units with an ISO 4217 currency. Topic names carry the "
            "major version; an optional TOPIC_PREFIX is prepended per environment.",
        },
        "defaultContentType": "application/json",
        "servers": {"local": {"host": "127.0.0.1:29092", "protocol": "kafka", "description": "make run"}},
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }


def render() -> str:
    return yaml.safe_dump(document(), sort_keys=False, allow_unicode=True, width=120)


if __name__ == "__main__":
    sys.stdout.write(render())
