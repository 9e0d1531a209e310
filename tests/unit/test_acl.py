"""The table of shared/acl.py against the code it must follow: producers, subscriptions, the README."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared import acl, kafka_admin
from shared.acl import (
    AGENCY_GROUP_PREFIX,
    AGENCY_READER,
    CONSUMES,
    DEV_PORTALS,
    OPERATOR,
    PUBLIC_TOPICS,
    SERVICES,
    Grant,
    grants,
    portal_name,
    principals,
    reads,
    writes,
)
from shared.topics import TOPIC_SPECS, Topic

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


def subscriptions(service: str) -> set[Topic]:
    """The topics a service subscribes to, read off its real runtime (as the AsyncAPI document is)."""
    from tools.asyncapi import consumers

    return set(consumers()[service])


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_may_read_what_it_subscribes_to_and_its_dead_letters(service: str) -> None:
    assert set(CONSUMES[service]) == subscriptions(service), f"services/{service}/app.py and shared/acl.py CONSUMES disagree"
    assert set(reads(service)) == set(CONSUMES[service]) | {Topic.DEAD_LETTER}
    assert Grant("group", f"clustergrants.{service}", "Read") in grants(service)


def test_writes_are_exactly_the_producers_of_topic_specs() -> None:
    portal = DEV_PORTALS[0]
    for topic, spec in TOPIC_SPECS.items():
        writers = {p for p in principals() if topic in writes(p)}
        expected = {p for p in SERVICES if p in spec.producers} | (set(DEV_PORTALS) if "portal" in spec.producers else set())
        assert writers == expected, topic.value
    assert set(writes(portal)) == {Topic.APPLICATION_SUBMITTED, Topic.ASSESSMENT_SUBMITTED}
    for service in SERVICES:
        assert Topic.DEAD_LETTER in writes(service)


def test_readers_outside_the_services() -> None:
    assert set(PUBLIC_TOPICS) == set(Topic) - {Topic.APPLICATION_SUBMITTED, Topic.DEAD_LETTER}
    assert set(reads(AGENCY_READER)) == set(PUBLIC_TOPICS) and writes(AGENCY_READER) == ()
    assert Grant("group", AGENCY_GROUP_PREFIX, "Read", "prefix") in grants(AGENCY_READER)
    assert reads(OPERATOR) == (Topic.DEAD_LETTER,) and writes(OPERATOR) == ()
    assert all(g.resource == "topic" for g in grants(OPERATOR))
    for portal in DEV_PORTALS:
        assert reads(portal) == () and all(g.operation == "Write" for g in grants(portal))
    # Raw submissions (personal data before validation) reach intake only.
    assert {p for p in principals() if Topic.APPLICATION_SUBMITTED in reads(p)} == {"intake"}


def test_portal_names_are_principal_names() -> None:
    assert portal_name("acme") == "portal-acme" == portal_name("portal-acme")
    for bad in ("Acme", "acme_1", "a" * 60, "", "acme-", "acme ", "../x", "portal-"):
        with pytest.raises(ValueError, match="cannot name a portal"):
            portal_name(bad)
    with pytest.raises(KeyError):
        principals(["intake-portal"])


def test_kafka_bindings_prefix_topics_but_not_groups() -> None:
    bindings = kafka_admin.principal_bindings("budget", "test-1.")
    topics = {b[1] for b in bindings if b[0] == kafka_admin.RESOURCE_TOPIC}
    assert topics == {f"test-1.{t.value}" for t in set(writes("budget")) | set(reads("budget"))}
    assert (kafka_admin.RESOURCE_GROUP, "clustergrants.budget", kafka_admin.PATTERN_LITERAL, "User:budget", "*", 3, 3) in bindings
    agency = kafka_admin.principal_bindings(AGENCY_READER)
    assert (kafka_admin.RESOURCE_GROUP, "agency.", kafka_admin.PATTERN_PREFIXED, "User:agency-reader", "*", 3, 3) in agency
    everything = kafka_admin.bindings(DEV_PORTALS, "p.")
    assert len(everything) == sum(len(grants(p)) for p in principals())
    # What a sync may prune: the project's topics of the prefixes it syncs, and the project's groups.
    assert kafka_admin.topic_prefix_of("p.clustergrants.grants.committed.v1") == "p."
    assert kafka_admin.topic_prefix_of("clustergrants.grants.committed.v1") == ""
    assert kafka_admin.topic_prefix_of("p.clustergrants.x") is None
    assert kafka_admin.in_scope(kafka_admin.RESOURCE_TOPIC, "p.clustergrants.grants.committed.v1", ["p."], groups=False)
    assert not kafka_admin.in_scope(kafka_admin.RESOURCE_TOPIC, "q.clustergrants.grants.committed.v1", ["p."], groups=False)
    assert not kafka_admin.in_scope(kafka_admin.RESOURCE_TOPIC, "p.clustergrants.grants.committed.v1", [""], groups=True)
    assert not kafka_admin.in_scope(kafka_admin.RESOURCE_TOPIC, "someone-elses-topic", [""], groups=True)
    assert kafka_admin.in_scope(kafka_admin.RESOURCE_GROUP, "clustergrants.intake", [""], groups=True)
    assert not kafka_admin.in_scope(kafka_admin.RESOURCE_GROUP, "clustergrants.intake", [""], groups=False)
    assert not kafka_admin.in_scope(kafka_admin.RESOURCE_GROUP, "their-erp", [""], groups=True)


def test_the_scram_request_carries_a_salted_password_never_the_password() -> None:
    request = kafka_admin.AlterUserScramCredentials({"portal-x": "s3cret-pass"}, ["portal-y"])
    struct = request.build(kafka_admin.AlterUserScramCredentialsRequest_v0)
    encoded = struct.encode()
    assert b"portal-x" in encoded and b"portal-y" in encoded
    assert b"s3cret-pass" not in encoded
    (name, mechanism, iterations, salt, salted, _tags), *_ = struct.upsertions
    assert (name, mechanism, iterations) == ("portal-x", kafka_admin.SCRAM_SHA_512, 4096)
    assert len(salt) == 32 and len(salted) == 64  # SHA-512


def test_readme_table_of_principals_is_up_to_date() -> None:
    text = acl.README.read_text()
    assert acl.START in text and acl.END in text
    assert "| `agency-reader` |" in text
    assert text == acl.rewrite(text), "the README's table of principals is stale: run `make docs` and commit it"
