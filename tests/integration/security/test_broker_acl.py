"""Authentication and authorization on the real broker: the attacks of issue 10, and the whole table.

Each principal of shared/acl.py is tried against every topic: what the table grants works, and
everything else is refused by the broker itself (TopicAuthorizationFailed, GroupAuthorizationFailed,
SaslAuthenticationFailed), not by a check of ours.
"""

from __future__ import annotations

import json
import secrets

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.conn import create_conn
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    SaslAuthenticationFailed,
    TopicAuthorizationFailedError,
)

from shared import kafka_admin
from shared.acl import (
    ADMIN,
    AGENCY_GROUP_PREFIX,
    AGENCY_READER,
    DEV_PORTALS,
    FAMILY_SCALED,
    OPERATOR,
    SERVICES,
    grants,
    principals,
    reads,
    service_group,
    writes,
)
from shared.cloudevents import attributes_for, to_headers
from shared.topics import TOPIC_SPECS, Topic
from tests.integration.security.conftest import Broker
from tests.kafka_tools import kafka_options, publish_raw
from tests.unit.budget.builders import decided, grant

pytestmark = pytest.mark.integration

PORTAL = DEV_PORTALS[-1]


async def end_offsets(broker: Broker, topic: Topic) -> int:
    """How many records `topic` holds (the sum of its partitions' end offsets), read as the admin."""
    consumer = AIOKafkaConsumer(**kafka_options(ADMIN, broker.bootstrap))
    await consumer.start()
    try:
        partitions = [TopicPartition(broker.name(topic), p) for p in range(TOPIC_SPECS[topic].partitions)]
        return sum((await consumer.end_offsets(partitions)).values())
    finally:
        await consumer.stop()


# --- the attacks of issue 10 ---------------------------------------------------------------------


async def test_an_agency_reader_cannot_publish_a_copy_of_an_eligibility_decision(broker: Broker) -> None:
    """Issue 10: a copy of a real EligibilityDecided with a new application id, from an ordinary client."""
    genuine = decided(grant("vlaio.clusters", {2020: 100_000_00}))
    await publish_raw(
        broker.bootstrap,
        broker.name(Topic.ELIGIBILITY_DECIDED),
        genuine.model_dump_json().encode(),
        genuine.key().encode(),
        to_headers(attributes_for(genuine, source="/clustergrants/eligibility")),
    )  # as eligibility, its producer
    before = await end_offsets(broker, Topic.ELIGIBILITY_DECIDED)
    assert before >= 2  # the seed and the genuine decision

    # The agency reader may read it ...
    seen = json.loads(await broker.read(AGENCY_READER, Topic.ELIGIBILITY_DECIDED))
    assert "seed" in seen or seen["application_id"] == genuine.application_id
    # ... but its copy, with another application id, is refused by the broker: by a plain producer at
    # the write (TopicAuthorizationFailed), by an idempotent one already at its producer id, since the
    # agency reader may write no topic at all (ClusterAuthorizationFailed).
    forged = genuine.model_copy(update={"application_id": f"FORGED-{secrets.token_hex(4)}"})
    headers = to_headers(attributes_for(forged, source="/attacker"))
    producer = AIOKafkaProducer(**kafka_options(AGENCY_READER, broker.bootstrap), acks=1)
    await producer.start()
    try:
        with pytest.raises(TopicAuthorizationFailedError):
            await producer.send_and_wait(
                broker.name(Topic.ELIGIBILITY_DECIDED), forged.model_dump_json().encode(), forged.key().encode(), headers=headers
            )
    finally:
        await producer.stop()
    with pytest.raises(ClusterAuthorizationFailedError):
        await publish_raw(
            broker.bootstrap,
            broker.name(Topic.ELIGIBILITY_DECIDED),
            forged.model_dump_json().encode(),
            forged.key().encode(),
            headers,
            principal=AGENCY_READER,
        )
    assert await end_offsets(broker, Topic.ELIGIBILITY_DECIDED) == before, "nothing of the forgery landed"


async def test_a_portal_submits_but_cannot_decide_commit_or_read_dead_letters(broker: Broker) -> None:
    await broker.produce(PORTAL, Topic.APPLICATION_SUBMITTED)
    await broker.produce(PORTAL, Topic.ASSESSMENT_SUBMITTED)
    for topic in (Topic.ELIGIBILITY_DECIDED, Topic.GRANT_COMMITTED):
        with pytest.raises(TopicAuthorizationFailedError):
            await broker.produce(PORTAL, topic)
    with pytest.raises(TopicAuthorizationFailedError):
        await broker.read(PORTAL, Topic.DEAD_LETTER)
    with pytest.raises(TopicAuthorizationFailedError):  # not even what portals themselves submit
        await broker.read(PORTAL, Topic.APPLICATION_SUBMITTED)


async def test_a_wrong_password_an_unknown_user_or_no_credentials_cannot_connect(broker: Broker) -> None:
    host, port = broker.bootstrap.rsplit(":", 1)
    for user, password in ((PORTAL, "not-the-password"), ("portal-nobody", secrets.token_urlsafe(16)), (ADMIN, "")):
        with pytest.raises(SaslAuthenticationFailed):
            await create_conn(
                host,
                int(port),
                security_protocol="SASL_PLAINTEXT",
                sasl_mechanism="SCRAM-SHA-512",
                sasl_plain_username=user,
                sasl_plain_password=password,
            )
    # A client without SASL: the broker closes the connection at its first request.
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=5000)
    with pytest.raises(KafkaConnectionError):
        await admin.start()
    await admin.close()
    # The controller listener takes only the broker's own PLAIN credentials.
    with pytest.raises(SaslAuthenticationFailed):
        await create_conn(
            host,
            int(port) + 1,
            security_protocol="SASL_PLAINTEXT",
            sasl_mechanism="PLAIN",
            sasl_plain_username="controller",
            sasl_plain_password=broker.credentials.passwords[PORTAL],
        )
    controller = AIOKafkaAdminClient(bootstrap_servers=f"{host}:{int(port) + 1}", request_timeout_ms=5000)
    with pytest.raises(KafkaConnectionError):
        await controller.start()
    await controller.close()


# --- the table, row by row ----------------------------------------------------------------------


@pytest.mark.parametrize("principal", principals())
async def test_each_principal_may_do_exactly_what_the_table_says(broker: Broker, principal: str) -> None:
    allowed_writes, allowed_reads = set(writes(principal)), set(reads(principal))
    assert allowed_writes | allowed_reads, f"{principal} may do nothing?"
    if not allowed_writes:  # no producer id either (KIP-679): an idempotent producer fails at once
        with pytest.raises(ClusterAuthorizationFailedError):
            await broker.produce(principal, next(iter(allowed_reads)))
    for topic in Topic:
        if topic in allowed_writes:
            await broker.produce(principal, topic)
        else:
            with pytest.raises(TopicAuthorizationFailedError):
                await broker.produce(principal, topic, idempotent=bool(allowed_writes))
        if topic in allowed_reads:
            assert await broker.read(principal, topic)
        else:
            with pytest.raises(TopicAuthorizationFailedError):
                await broker.read(principal, topic, timeout=5)

    # Consumer groups: its own (an offset fetch needs the group's ACL), never another's.
    own = [g.name for g in grants(principal) if g.resource == "group"]
    if principal in SERVICES:
        if principal in FAMILY_SCALED:  # its scheme families' groups too (clustergrants.eligibility.vlaio, ...)
            assert own == [service_group(principal), service_group(principal) + "."]
            assert await committed(broker, principal, service_group(principal) + ".vlaio") is None
        else:
            assert own == [service_group(principal)]
        assert await committed(broker, principal, service_group(principal)) is None
    elif principal == AGENCY_READER:
        assert own == [AGENCY_GROUP_PREFIX]
        assert await committed(broker, principal, f"{AGENCY_GROUP_PREFIX}erp-{secrets.token_hex(3)}") is None
    else:
        assert own == []
    family_groups = [service_group(s) + ".vlaio" for s in FAMILY_SCALED if s != principal]
    for neighbour in [service_group(s) for s in SERVICES if s != principal] + family_groups + ["clustergrants.attacker", "erp"]:
        with pytest.raises(GroupAuthorizationFailedError):
            await committed(broker, principal, neighbour)


async def committed(broker: Broker, principal: str, group: str) -> int | None:
    """The committed offset of `group` on a topic `principal` may read (an OffsetFetch: joins nothing)."""
    readable = reads(principal) or writes(principal)
    consumer = AIOKafkaConsumer(**kafka_options(principal, broker.bootstrap), group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        return await consumer.committed(TopicPartition(broker.name(readable[0]), 0))
    finally:
        await consumer.stop()


async def test_idempotent_producers_need_no_cluster_acl(broker: Broker) -> None:
    """Kafka 4.1 (KIP-679): WRITE on a topic lets a producer be idempotent; no IDEMPOTENT_WRITE is granted
    (and a principal without any WRITE gets no producer id: see the table test)."""
    admin = AIOKafkaAdminClient(**kafka_options(ADMIN, broker.bootstrap))
    await admin.start()
    try:
        acls = await kafka_admin.describe_acls(admin)
    finally:
        await admin.close()
    assert acls, "the broker has the table's ACLs"
    assert {acl[0] for acl in acls} <= {kafka_admin.RESOURCE_TOPIC, kafka_admin.RESOURCE_GROUP}, "no cluster ACL at all"
    assert {acl[5] for acl in acls} <= {kafka_admin.OPERATION_READ, kafka_admin.OPERATION_WRITE}
    await broker.produce(PORTAL, Topic.APPLICATION_SUBMITTED)  # enable_idempotence=True (Broker.produce)


async def test_an_acl_outside_the_table_is_removed_by_the_next_sync(broker: Broker) -> None:
    stray = (
        kafka_admin.RESOURCE_TOPIC,
        broker.name(Topic.GRANT_COMMITTED),
        kafka_admin.PATTERN_LITERAL,
        f"User:{OPERATOR}",
        "*",
        kafka_admin.OPERATION_WRITE,
        kafka_admin.PERMISSION_ALLOW,
    )
    admin = AIOKafkaAdminClient(**kafka_options(ADMIN, broker.bootstrap))
    await admin.start()
    try:
        await kafka_admin.create_acls(admin, [stray])
        await kafka_admin.wait_until_authorized(kafka_options(OPERATOR, broker.bootstrap), broker.name(Topic.GRANT_COMMITTED))
        await broker.produce(OPERATOR, Topic.GRANT_COMMITTED)  # the broker honours whatever ACLs it has ...
        changes = await kafka_admin.sync_acls(admin, broker.credentials.portals, broker.prefix, groups=False)
        assert changes["deleted"] == 1 and changes["created"] == 0, changes
        assert stray not in await kafka_admin.describe_acls(admin)
    finally:
        await kafka_admin.delete_acls(admin, [stray])
        await admin.close()
    await kafka_admin.wait_until_authorized(
        kafka_options(OPERATOR, broker.bootstrap), broker.name(Topic.GRANT_COMMITTED), authorized=False
    )
    with pytest.raises(TopicAuthorizationFailedError):  # ... and the table's are all it keeps
        await broker.produce(OPERATOR, Topic.GRANT_COMMITTED, idempotent=False)
