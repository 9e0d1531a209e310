"""Who may do what on the Kafka cluster: the one table from which everything else is derived.

The local broker's ACLs (`shared.kafka_admin.sync_acls`, applied by `deploy/local/stack.py` and by
the test fixtures for their topic prefixes), the Strimzi `KafkaUser` resources
(`python -m deploy.k8s.kafka_users`) and the README's table of principals (`python -m shared.acl
--write`, checked by a test) all come from `grants()` below. Writes follow `TOPIC_SPECS[...].producers`
in `shared/topics.py`; reads follow what each service subscribes to (`CONSUMES`, checked against the
services' `app.py` by a test).

Every grant allows; nothing is granted by default (`allow.everyone.if.no.acl.found=false` on the
broker). READ implies DESCRIBE and WRITE implies DESCRIBE (Kafka's implication rules), and since
Kafka 3.0 (KIP-679) WRITE on a topic is all an idempotent producer needs: no IDEMPOTENT_WRITE on the
cluster. Topic names take the environment's `TOPIC_PREFIX`; consumer group ids do not (the services
use `clustergrants.<service>` whatever the prefix).

    python -m shared.acl            # print the README's table of principals
    python -m shared.acl --write    # rewrite it between the README's markers
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from shared.topics import SERVICES as SERVICES  # the one list; re-exported for the ACL table's readers
from shared.topics import TOPIC_SPECS, Topic

Operation = Literal["Read", "Write"]
ResourceType = Literal["topic", "group"]
PatternType = Literal["literal", "prefix"]
Role = Literal["service", "portal", "agency", "operator"]

AGENCY_READER = "agency-reader"
OPERATOR = "operator"
ADMIN = "admin"
"""The super user of the local broker: the stack's own set-up (users, ACLs, topics) and nothing else."""

PORTAL_PREFIX = "portal-"
DEV_PORTALS: tuple[str, ...] = ("portal-demo", "portal-test")
"""The portals the local stack creates: the demo's/developer's and the one the tests submit as."""

AGENCY_GROUP_PREFIX = "agency."
"""Consumer groups of agency systems reading with `agency-reader` must start with this."""

#: What each service consumes (its composition root's `runtime.subscribe` calls). A test checks this
#: against services/*/app.py, so a new subscription without its READ grant fails the suite.
CONSUMES: dict[str, tuple[Topic, ...]] = {
    "intake": (
        Topic.APPLICATION_SUBMITTED,
        Topic.ELIGIBILITY_DECIDED,
        Topic.GRANT_COMMITTED,
        Topic.GRANT_REFUSED,
        Topic.GRANT_RELEASED,
        Topic.NOTIFICATION_SENT,
    ),
    "eligibility": (Topic.APPLICATION_RECEIVED, Topic.ASSESSMENT_SUBMITTED, Topic.FINDING_RECORDED),
    "budget": (Topic.ELIGIBILITY_DECIDED, Topic.CEILING_RESET, Topic.CLUSTER_EVALUATED),
    "notify": (
        Topic.APPLICATION_REJECTED,
        Topic.ELIGIBILITY_DECIDED,
        Topic.GRANT_COMMITTED,
        Topic.GRANT_REFUSED,
        Topic.GRANT_RELEASED,
        Topic.CEILING_RESET,
        Topic.CLUSTER_EVALUATED,
    ),
    "opendata": (Topic.APPLICATION_RECEIVED, Topic.GRANT_COMMITTED, Topic.GRANT_RELEASED),
}

#: Not for agency systems: raw portal input (personal data before validation) and parked records.
PRIVATE_TOPICS: tuple[Topic, ...] = (Topic.APPLICATION_SUBMITTED, Topic.DEAD_LETTER)
PUBLIC_TOPICS: tuple[Topic, ...] = tuple(t for t in Topic if t not in PRIVATE_TOPICS)

_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


@dataclass(frozen=True, order=True)
class Grant:
    """One allowed operation on one resource (a Kafka ACL binding, a Strimzi `acls` entry)."""

    resource: ResourceType
    name: str
    """A topic (`Topic` value, before the prefix) or a consumer group id (or its prefix)."""
    operation: Operation
    pattern: PatternType = "literal"

    def resource_name(self, prefix: str = "") -> str:
        return f"{prefix}{self.name}" if self.resource == "topic" else self.name


def is_portal(principal: str) -> bool:
    return principal.startswith(PORTAL_PREFIX) and valid_name(principal)


def valid_name(principal: str) -> bool:
    """Lower-case letters, digits and '-', at most 63: a SCRAM user, a KafkaUser and its Secret alike."""
    return bool(_NAME.match(principal))


def portal_name(name: str) -> str:
    """`acme` or `portal-acme` -> `portal-acme`; refuses what cannot be a principal name."""
    principal = name if name.startswith(PORTAL_PREFIX) else f"{PORTAL_PREFIX}{name}"
    if not is_portal(principal) or principal == PORTAL_PREFIX.rstrip("-"):
        raise ValueError(
            f"{name!r} cannot name a portal: lower-case letters, digits and '-', at most {63 - len(PORTAL_PREFIX)} characters"
        )
    return principal


def role_of(principal: str) -> Role:
    if principal in SERVICES:
        return "service"
    if principal == AGENCY_READER:
        return "agency"
    if principal == OPERATOR:
        return "operator"
    if is_portal(principal):
        return "portal"
    raise KeyError(f"{principal!r} is no principal of clustergrants (see shared/acl.py)")


def writes(principal: str) -> tuple[Topic, ...]:
    """The topics `principal` may publish to: those whose producers name it (or name portals)."""
    role = role_of(principal)
    producer = principal if role == "service" else "portal" if role == "portal" else None
    found = [t for t in Topic if producer is not None and producer in TOPIC_SPECS[t].producers]
    if role == "service" and Topic.DEAD_LETTER not in found:
        found.append(Topic.DEAD_LETTER)  # whoever consumes may park what it cannot process
    return tuple(found)


def reads(principal: str) -> tuple[Topic, ...]:
    role = role_of(principal)
    if role == "service":
        # The dead-letter topic too: a parking service re-reads the records it parked itself (redrive).
        return (*CONSUMES[principal], Topic.DEAD_LETTER)
    if role == "agency":
        return PUBLIC_TOPICS
    if role == "operator":
        return (Topic.DEAD_LETTER,)
    return ()


#: Services whose instances can be limited to scheme families, each family set in a group of its own.
FAMILY_SCALED = ("eligibility",)


def service_group(service: str) -> str:
    return f"clustergrants.{service}"


def grants(principal: str) -> tuple[Grant, ...]:
    """Everything `principal` may do; the only source of every ACL of the project."""
    found = [Grant("topic", t.value, "Write") for t in writes(principal)]
    found += [Grant("topic", t.value, "Read") for t in reads(principal)]
    role = role_of(principal)
    if role == "service":
        found.append(Grant("group", service_group(principal), "Read"))
        if principal in FAMILY_SCALED:
            # An instance limited to scheme families consumes in a group of its own per family set
            # (`clustergrants.eligibility.vlaio`, shared/schemes.py): every group under the service's.
            found.append(Grant("group", service_group(principal) + ".", "Read", "prefix"))
    elif role == "agency":
        found.append(Grant("group", AGENCY_GROUP_PREFIX, "Read", "prefix"))
    return tuple(sorted(set(found)))


def principals(portals: Iterable[str] = DEV_PORTALS) -> tuple[str, ...]:
    """Every principal of the table: the services, the agency reader, the operator, the given portals."""
    for portal in portals:
        role_of(portal)  # raises on a name that is not a portal's
    return (*SERVICES, AGENCY_READER, OPERATOR, *sorted(set(portals)))


def producer_of(topic: Topic) -> str:
    """A principal that may publish `topic` (a test or a tool acting as its legitimate producer)."""
    producers = TOPIC_SPECS[topic].producers
    return DEV_PORTALS[-1] if "portal" in producers else producers[0]


def reader_of(topic: Topic) -> str:
    """A principal that may read `topic`: the agency reader where it can, else the operator or a service."""
    for principal in (AGENCY_READER, OPERATOR, *SERVICES):
        if topic in reads(principal):
            return principal
    raise KeyError(f"nobody may read {topic.value}")


# --- the README's table ------------------------------------------------------------------------

README = Path(__file__).resolve().parents[1] / "README.md"
START, END = "<!-- principals:start -->", "<!-- principals:end -->"

_WHO = {
    "service": "the {name} service (its Deployment, its process in `make run` and the tests)",
    "portal": "an agency portal (`{name}`: {why})",
    "agency": "agency systems consuming the public topics",
    "operator": "the operator's command line (`clustergrants`)",
}
_PORTAL_WHY = {"portal-demo": "`make demo` and developers", "portal-test": "the test suite"}


def _short(topic: str) -> str:
    return topic.removeprefix("clustergrants.")


def table(portals: Iterable[str] = DEV_PORTALS) -> str:
    rows = [
        "| principal | who | writes | reads | consumer groups |",
        "|---|---|---|---|---|",
    ]
    for principal in principals(portals):
        role = role_of(principal)
        mine = grants(principal)
        written = ", ".join(_short(g.name) for g in mine if g.resource == "topic" and g.operation == "Write") or "nothing"
        read = ", ".join(_short(g.name) for g in mine if g.resource == "topic" and g.operation == "Read") or "nothing"
        groups = ", ".join(f"`{g.name}*`" if g.pattern == "prefix" else f"`{g.name}`" for g in mine if g.resource == "group")
        who = _WHO[role].format(name=principal, why=_PORTAL_WHY.get(principal, "added by the operator"))
        rows.append(f"| `{principal}` | {who} | {written} | {read} | {groups or 'none'} |")
    return "\n".join(rows)


def rewrite(text: str) -> str:
    start, end = text.index(START) + len(START), text.index(END)
    return f"{text[:start]}\n{table()}\n{text[end:]}"


def acl_lines(principal: str, prefix: str = "") -> list[str]:
    """Human-readable ACLs (for a command's output), e.g. `Write topic clustergrants.x.v1`."""
    return [
        f"{g.operation} {g.resource} {g.resource_name(prefix)}{'*' if g.pattern == 'prefix' else ''}" for g in grants(principal)
    ]


def main(argv: list[str]) -> int:
    if argv[1:] == ["--write"]:
        README.write_text(rewrite(README.read_text()))
        print("README.md: table of principals rewritten", file=sys.stderr)
        return 0
    if argv[1:]:
        print(__doc__, file=sys.stderr)
        return 2
    print(table())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
