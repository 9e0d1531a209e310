"""Topics, SCRAM users and ACLs on the broker, through the Kafka Admin API (all idempotent).

    python -m shared.kafka_admin create-topics    # the topics of TOPIC_PREFIX (as the admin principal)

aiokafka's admin client has no methods for ACLs or SCRAM credentials, but its protocol layer has the
CreateAcls / DescribeAcls / DeleteAcls requests; AlterUserScramCredentials (KIP-554, API key 51) is
declared below with aiokafka's own schema types. The salted password is computed here, as Kafka's
own admin client does (RFC 5802: PBKDF2-HMAC over a random salt): the password never crosses the
wire, and never appears on a command line.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import sys
from collections.abc import Iterable, Mapping
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError, for_code
from aiokafka.protocol.admin import CreateAclsRequest_v1, DeleteAclsRequest_v1, DescribeAclsRequest
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import CompactArray, CompactBytes, CompactString, Int8, Int16, Int32, Schema, TaggedFields

from shared.acl import AGENCY_GROUP_PREFIX, Grant, grants, principals
from shared.kafka_security import client_options
from shared.settings import CommonSettings
from shared.topics import TOPIC_SPECS, Topic, topic_name

# Kafka's wire codes (org.apache.kafka.common.resource / acl, ScramMechanism).
RESOURCE_ANY, RESOURCE_TOPIC, RESOURCE_GROUP = 1, 2, 3
PATTERN_ANY, PATTERN_LITERAL, PATTERN_PREFIXED = 1, 3, 4
OPERATION_ANY, OPERATION_READ, OPERATION_WRITE = 1, 3, 4
PERMISSION_ANY, PERMISSION_ALLOW = 1, 3
SCRAM_SHA_512, SCRAM_ITERATIONS = 2, 4096  # 4096: Kafka's minimum (and default) for SCRAM-SHA-512

_RESOURCE = {"topic": RESOURCE_TOPIC, "group": RESOURCE_GROUP}
_PATTERN = {"literal": PATTERN_LITERAL, "prefix": PATTERN_PREFIXED}
_OPERATION = {"Read": OPERATION_READ, "Write": OPERATION_WRITE}

Binding = tuple[int, str, int, str, str, int, int]
"""(resource type, resource name, pattern type, principal, host, operation, permission): CreateAcls v1."""


class AdminError(RuntimeError):
    """The broker refused an administrative request; the message names what and why."""


# --- AlterUserScramCredentials (KIP-554), in aiokafka's protocol types ---------------------------


class AlterUserScramCredentialsResponse_v0(Response):
    API_KEY = 51
    API_VERSION = 0
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        (
            "results",
            CompactArray(
                ("user", CompactString("utf-8")),
                ("error_code", Int16),
                ("error_message", CompactString("utf-8")),
                ("tags", TaggedFields),
            ),
        ),
        ("tags", TaggedFields),
    )


class AlterUserScramCredentialsRequest_v0(RequestStruct):
    FLEXIBLE_VERSION = True
    API_KEY = 51
    API_VERSION = 0
    RESPONSE_TYPE = AlterUserScramCredentialsResponse_v0
    SCHEMA = Schema(
        ("deletions", CompactArray(("name", CompactString("utf-8")), ("mechanism", Int8), ("tags", TaggedFields))),
        (
            "upsertions",
            CompactArray(
                ("name", CompactString("utf-8")),
                ("mechanism", Int8),
                ("iterations", Int32),
                ("salt", CompactBytes),
                ("salted_password", CompactBytes),
                ("tags", TaggedFields),
            ),
        ),
        ("tags", TaggedFields),
    )


class AlterUserScramCredentials(Request[AlterUserScramCredentialsRequest_v0]):
    API_KEY = 51

    def __init__(self, upsert: Mapping[str, str], delete: Iterable[str] = ()) -> None:
        self._upsert = upsert
        self._delete = list(delete)

    def build(self, request_struct_class: type[AlterUserScramCredentialsRequest_v0]) -> AlterUserScramCredentialsRequest_v0:
        upsertions: list[tuple[str, int, int, bytes, bytes, dict[str, Any]]] = []
        for name, password in self._upsert.items():
            salt = secrets.token_bytes(32)
            salted = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, SCRAM_ITERATIONS)
            upsertions.append((name, SCRAM_SHA_512, SCRAM_ITERATIONS, salt, salted, {}))
        deletions: list[tuple[str, int, dict[str, Any]]] = [(name, SCRAM_SHA_512, {}) for name in self._delete]
        return request_struct_class(deletions, upsertions, {})


class _CreateAcls(Request[CreateAclsRequest_v1]):
    """aiokafka's CreateAclsRequest carries one binding; this one carries them all in one request."""

    API_KEY = 30

    def __init__(self, bindings: list[Binding]) -> None:
        self._bindings = bindings

    def build(self, request_struct_class: type[CreateAclsRequest_v1]) -> CreateAclsRequest_v1:
        return request_struct_class(self._bindings)


class _DeleteAcls(Request[DeleteAclsRequest_v1]):
    API_KEY = 31

    def __init__(self, filters: list[Binding]) -> None:
        self._filters = filters

    def build(self, request_struct_class: type[DeleteAclsRequest_v1]) -> DeleteAclsRequest_v1:
        return request_struct_class(self._filters)


def _raise_for(code: int, message: str | None, what: str) -> None:
    if code:
        raise AdminError(f"{what}: {for_code(code).__name__}{f' ({message})' if message else ''}")


# --- users ----------------------------------------------------------------------------------------


async def upsert_users(admin: AIOKafkaAdminClient, passwords: Mapping[str, str]) -> None:
    """Create or reset the SCRAM-SHA-512 credential of each user (an upsert: safe to repeat)."""
    if not passwords:
        return
    response = await admin._send_request(AlterUserScramCredentials(passwords))
    for user, code, message, _tags in response.results:
        _raise_for(code, message, f"SCRAM credential of {user!r}")


async def delete_users(admin: AIOKafkaAdminClient, names: Iterable[str]) -> None:
    """Remove the SCRAM-SHA-512 credentials of `names` (a user who has none is not an error)."""
    names = list(names)
    if not names:
        return
    response = await admin._send_request(AlterUserScramCredentials({}, names))
    for user, code, message, _tags in response.results:
        if for_code(code).__name__ != "ResourceNotFoundError":
            _raise_for(code, message, f"removing the SCRAM credential of {user!r}")


# --- ACLs -----------------------------------------------------------------------------------------


def binding(principal: str, grant: Grant, prefix: str = "") -> Binding:
    return (
        _RESOURCE[grant.resource],
        grant.resource_name(prefix),
        _PATTERN[grant.pattern],
        f"User:{principal}",
        "*",
        _OPERATION[grant.operation],
        PERMISSION_ALLOW,
    )


def principal_bindings(principal: str, prefix: str = "") -> set[Binding]:
    """The ACLs of one principal for topics named with `prefix` (groups are never prefixed)."""
    return {binding(principal, g, prefix) for g in grants(principal)}


def bindings(portals: Iterable[str], prefix: str = "") -> set[Binding]:
    """The ACLs of the whole table (with these portals) for topics named with `prefix`."""
    return {acl for principal in principals(portals) for acl in principal_bindings(principal, prefix)}


def topic_prefix_of(name: str) -> str | None:
    """The prefix of a project topic's name (`test-1.` of `test-1.clustergrants.x.v1`), None for others."""
    for topic in Topic:
        if name.endswith(topic.value):
            return name[: -len(topic.value)]
    return None


def in_scope(resource_type: int, name: str, prefixes: Iterable[str], groups: bool) -> bool:
    """Whether an existing ACL is about the project's resources (topics of these `prefixes`, and with
    `groups` the project's consumer groups), and so the table's to decide."""
    if resource_type == RESOURCE_TOPIC:
        return topic_prefix_of(name) in set(prefixes)
    if resource_type == RESOURCE_GROUP:
        return groups and (name.startswith("clustergrants.") or name.startswith(AGENCY_GROUP_PREFIX))
    return False


async def describe_acls(admin: AIOKafkaAdminClient) -> set[Binding]:
    response = await admin._send_request(
        DescribeAclsRequest(RESOURCE_ANY, None, PATTERN_ANY, None, None, OPERATION_ANY, PERMISSION_ANY)
    )
    _raise_for(response.error_code, response.error_message, "describing ACLs")
    found = set()
    for resource_type, name, pattern, acls in response.resources:
        for principal, host, operation, permission in acls:
            found.add((resource_type, name, pattern, principal, host, operation, permission))
    return found


async def create_acls(admin: AIOKafkaAdminClient, wanted: Iterable[Binding]) -> None:
    wanted = sorted(wanted)
    if not wanted:
        return
    response = await admin._send_request(_CreateAcls(wanted))
    for acl, (code, message) in zip(wanted, response.creation_responses, strict=True):
        _raise_for(code, message, f"creating ACL {acl}")


async def delete_acls(admin: AIOKafkaAdminClient, stale: Iterable[Binding]) -> None:
    stale = sorted(stale)
    if not stale:
        return
    response = await admin._send_request(_DeleteAcls(stale))
    for acl, (code, message, _matching) in zip(stale, response.filter_responses, strict=True):
        _raise_for(code, message, f"deleting ACL {acl}")


async def sync_acls(
    admin: AIOKafkaAdminClient, portals: Iterable[str], prefix: str = "", *, groups: bool = True, every_prefix: bool = False
) -> dict[str, int]:
    """Make the broker's ACLs on the project's topics of `prefix` exactly those of shared/acl.py.

    Missing ACLs are created, and any other ACL on those topics (a grant the table no longer has, or
    one somebody added by hand) is deleted. With `groups`, the same for the project's consumer groups
    (`clustergrants.*`, `agency.*`), which every prefix shares. With `every_prefix`, the same for every
    other prefix the broker has project-topic ACLs for (earlier test runs, say): the stack's start
    leaves no grant anywhere that the table does not make.
    """
    portals = list(portals)
    existing = await describe_acls(admin)
    prefixes = {prefix}
    if every_prefix:
        prefixes |= {p for acl in existing if acl[0] == RESOURCE_TOPIC and (p := topic_prefix_of(acl[1])) is not None}
    wanted = {acl for p in prefixes for acl in bindings(portals, p)}
    stale = {acl for acl in existing if in_scope(acl[0], acl[1], prefixes, groups) and acl not in wanted}
    await create_acls(admin, wanted - existing)
    await delete_acls(admin, stale)
    return {"created": len(wanted - existing), "deleted": len(stale), "kept": len(wanted & existing)}


async def wait_until_authorized(
    options: Mapping[str, Any], topic: str, timeout_s: float = 15, *, authorized: bool = True
) -> None:
    """Wait until the client of `options` may see `topic` (or, `authorized=False`, may no longer): ACLs
    just changed take a moment to reach the broker's authorizer. (A topic not created yet answers
    UnknownTopicOrPartition to a client that may see it.)"""
    deadline = asyncio.get_running_loop().time() + timeout_s
    admin = AIOKafkaAdminClient(**options)
    await admin.start()
    try:
        while True:
            (described,) = await admin.describe_topics([topic])
            if (for_code(described["error_code"]).__name__ != "TopicAuthorizationFailedError") == authorized:
                return
            if asyncio.get_running_loop().time() > deadline:
                raise AdminError(f"the ACL change on {topic} did not take effect within {timeout_s:.0f} s")
            await asyncio.sleep(0.1)
    finally:
        await admin.close()


async def revoke_principal(admin: AIOKafkaAdminClient, principal: str) -> None:
    """Delete every ACL of `principal`, on every resource of every prefix."""
    # (ignore below) a filter: None matches any name and host
    await delete_acls(admin, [(RESOURCE_ANY, None, PATTERN_ANY, f"User:{principal}", None, OPERATION_ANY, PERMISSION_ANY)])  # type: ignore[list-item]


# --- topics ---------------------------------------------------------------------------------------


async def create_topics(bootstrap: str, prefix: str = "", replication: int = 1, **options: Any) -> list[str]:
    """Create the missing topics; `options` are aiokafka security settings (see shared.kafka_security)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **options)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(
                topic_name(topic, prefix),
                num_partitions=spec.partitions,
                replication_factor=replication,
                topic_configs={"retention.ms": str(spec.retention_ms)},
            )
            for topic, spec in TOPIC_SPECS.items()
            if topic_name(topic, prefix) not in existing
        ]
        if wanted:
            response = await admin.create_topics(wanted)
            for name, code, *message in response.topic_errors:  # v0 has no error message
                if for_code(code) is not TopicAlreadyExistsError:  # another process created it first: fine
                    _raise_for(code, message[0] if message else None, f"creating topic {name}")
        return [t.name for t in wanted]
    finally:
        await admin.close()


def main() -> None:
    if sys.argv[1:] != ["create-topics"]:
        sys.exit("usage: python -m shared.kafka_admin create-topics")
    settings = CommonSettings()
    options = client_options(settings)
    bootstrap = options.pop("bootstrap_servers")
    try:
        created = asyncio.run(create_topics(bootstrap, settings.topic_prefix, **options))
    except AdminError as error:
        sys.exit(f"kafka_admin: {error}")
    print(f"topics created: {len(created)}", file=sys.stderr)


if __name__ == "__main__":
    main()
