"""Kafka topic names and their settings.

Names are `clustergrants.<area>.<fact>.v<major>`: a breaking change to an event's schema gets a new
topic, so old and new consumers can run side by side during a migration. An optional prefix
(setting `TOPIC_PREFIX`) separates environments or test runs sharing one cluster.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal


class Topic(StrEnum):
    APPLICATION_SUBMITTED = "clustergrants.applications.submitted.v1"
    APPLICATION_RECEIVED = "clustergrants.applications.received.v1"
    APPLICATION_REJECTED = "clustergrants.applications.rejected.v1"
    ELIGIBILITY_DECIDED = "clustergrants.eligibility.decided.v1"
    GRANT_COMMITTED = "clustergrants.grants.committed.v1"
    GRANT_REFUSED = "clustergrants.grants.refused.v1"
    CEILING_RESET = "clustergrants.budget.ceiling-reset.v1"
    NOTIFICATION_SENT = "clustergrants.notifications.sent.v1"
    DEAD_LETTER = "clustergrants.dead-letter.v1"
    GRANT_RELEASED = "clustergrants.grants.released.v1"
    ASSESSMENT_SUBMITTED = "clustergrants.assessments.submitted.v1"
    CALL_CLOSED = "clustergrants.calls.closed.v1"
    AUDIT_RECORDED = "clustergrants.audit.recorded.v1"
    FINDING_RECORDED = "clustergrants.cases.finding-recorded.v1"
    CALL_OPENED = "clustergrants.calls.opened.v1"
    CLUSTER_EVALUATED = "clustergrants.clusters.evaluated.v1"


Producer = Literal["portal", "intake", "eligibility", "budget", "notify", "opendata"]
"""Who may publish to a topic: an agency portal (any authenticated portal principal) or one service."""

SERVICES: tuple[Producer, ...] = ("intake", "eligibility", "budget", "notify", "opendata")
"""Every service: its Kafka principal, consumer group `clustergrants.<service>`, PostgreSQL schema and
process (the one list the ACLs, migrations, the local stack and the manifests read)."""

SERVICE_SOURCE_PREFIX = "/clustergrants/"


def service_source(service: str) -> str:
    """The CloudEvents `source` of everything a service publishes."""
    return f"{SERVICE_SOURCE_PREFIX}{service}"


@dataclass(frozen=True)
class TopicSpec:
    partitions: int
    retention_ms: int
    description: str
    producers: tuple[Producer, ...]
    """The only principals that may write the topic: the broker's ACLs and every consumer's check of
    `ce_source` are derived from this (a service publishes with source `/clustergrants/<service>`)."""


DAY_MS = 24 * 60 * 60 * 1000

#: Partitions bound how many replicas of a consuming service can share the work. Assessments come from
#: portals on Kafka and through intake's HTTP endpoint (intake publishes those); dead letters from
#: whichever service parked the record.
TOPIC_SPECS: dict[Topic, TopicSpec] = {
    Topic.APPLICATION_SUBMITTED: TopicSpec(6, 30 * DAY_MS, "Applications as agency portals submit them.", ("portal",)),
    Topic.APPLICATION_RECEIVED: TopicSpec(6, 365 * DAY_MS, "Applications that passed validation.", ("intake",)),
    Topic.APPLICATION_REJECTED: TopicSpec(3, 365 * DAY_MS, "Input refused by intake, with every error.", ("intake",)),
    Topic.ELIGIBILITY_DECIDED: TopicSpec(6, 365 * DAY_MS, "Eligibility decisions, criterion by criterion.", ("eligibility",)),
    Topic.GRANT_COMMITTED: TopicSpec(6, 365 * DAY_MS, "Grants committed against the budget ledger.", ("budget",)),
    Topic.GRANT_REFUSED: TopicSpec(3, 365 * DAY_MS, "Eligible grants that did not fit a pot or limit.", ("budget",)),
    Topic.CEILING_RESET: TopicSpec(1, 10 * 365 * DAY_MS, "Budget years opened per programme.", ("budget",)),
    Topic.NOTIFICATION_SENT: TopicSpec(6, 90 * DAY_MS, "Every message delivered to an applicant or agency.", ("notify",)),
    Topic.DEAD_LETTER: TopicSpec(3, 90 * DAY_MS, "Messages a consumer could not process, with the error.", SERVICES),
    Topic.GRANT_RELEASED: TopicSpec(
        3,
        365 * DAY_MS,
        "Money of committed grants returned to their pots (withdrawn, reduced, revoked, not continued, capped).",
        ("budget",),
    ),
    Topic.ASSESSMENT_SUBMITTED: TopicSpec(
        3, 365 * DAY_MS, "Assessors' scores per criterion in competitive calls.", ("portal", "intake")
    ),
    Topic.CALL_CLOSED: TopicSpec(1, 10 * 365 * DAY_MS, "Competitive calls closed: ranking and selection.", ("eligibility",)),
    # A case handler's finding, recorded through intake's back-office endpoint (officer tokens);
    # eligibility turns it into the decision's next revision. Keyed by application id.
    Topic.FINDING_RECORDED: TopicSpec(
        6, 365 * DAY_MS, "Case handlers' findings per criterion of a referred or revised application.", ("intake",)
    ),
    Topic.CALL_OPENED: TopicSpec(
        1, 10 * 365 * DAY_MS, "Calls opened with their deadline and announcement date (Norway's yearly call).", ("eligibility",)
    ),
    Topic.CLUSTER_EVALUATED: TopicSpec(
        3, 10 * 365 * DAY_MS, "Annual evaluations of funded clusters: does the cluster continue (Norway).", ("eligibility",)
    ),
    # One partition: agency systems read the audit trail in the order it was written. Each service
    # publishes the records of the operator commands that changed its own state (through its outbox).
    Topic.AUDIT_RECORDED: TopicSpec(
        1,
        10 * 365 * DAY_MS,
        "Operator commands that changed a service's state: who, when, what, and what changed.",
        ("intake", "eligibility", "budget", "notify"),
    ),
}


def topic_name(topic: Topic, prefix: str = "") -> str:
    return f"{prefix}{topic.value}"
