"""Kafka topic names and their settings.

Names are `clustergrants.<area>.<fact>.v<major>`: a breaking change to an event's schema gets a new
topic, so old and new consumers can run side by side during a migration. An optional prefix
(setting `TOPIC_PREFIX`) separates environments or test runs sharing one cluster.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


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


@dataclass(frozen=True)
class TopicSpec:
    partitions: int
    retention_ms: int
    description: str


DAY_MS = 24 * 60 * 60 * 1000

#: Partitions bound how many replicas of a consuming service can share the work.
TOPIC_SPECS: dict[Topic, TopicSpec] = {
    Topic.APPLICATION_SUBMITTED: TopicSpec(6, 30 * DAY_MS, "Applications as agency portals submit them."),
    Topic.APPLICATION_RECEIVED: TopicSpec(6, 365 * DAY_MS, "Applications that passed validation."),
    Topic.APPLICATION_REJECTED: TopicSpec(3, 365 * DAY_MS, "Input refused by intake, with every error."),
    Topic.ELIGIBILITY_DECIDED: TopicSpec(6, 365 * DAY_MS, "Eligibility decisions, criterion by criterion."),
    Topic.GRANT_COMMITTED: TopicSpec(6, 365 * DAY_MS, "Grants committed against the budget ledger."),
    Topic.GRANT_REFUSED: TopicSpec(3, 365 * DAY_MS, "Eligible grants that did not fit a pot or limit."),
    Topic.CEILING_RESET: TopicSpec(1, 10 * 365 * DAY_MS, "Budget years opened per programme."),
    Topic.NOTIFICATION_SENT: TopicSpec(6, 90 * DAY_MS, "Every message delivered to an applicant or agency."),
    Topic.DEAD_LETTER: TopicSpec(3, 90 * DAY_MS, "Messages a consumer could not process, with the error."),
    Topic.GRANT_RELEASED: TopicSpec(3, 365 * DAY_MS, "Future slices of grants returned to their pots (withdrawn, reduced)."),
    Topic.ASSESSMENT_SUBMITTED: TopicSpec(3, 365 * DAY_MS, "Assessors' scores per criterion in competitive calls."),
    Topic.CALL_CLOSED: TopicSpec(1, 10 * 365 * DAY_MS, "Competitive calls closed: ranking and selection."),
}


def topic_name(topic: Topic, prefix: str = "") -> str:
    return f"{prefix}{topic.value}"
