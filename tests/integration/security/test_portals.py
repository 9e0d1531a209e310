"""An operator adds a portal to the running stack with the project's command, and removes it again."""

from __future__ import annotations

import asyncio
import os
import secrets
import stat
import subprocess
import sys

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.conn import create_conn
from aiokafka.errors import SaslAuthenticationFailed, TopicAuthorizationFailedError

from deploy.local.kafka_users import KafkaCredentials, read_dotenv
from shared import kafka_admin
from shared.acl import ADMIN
from shared.topics import Topic
from tests.integration.security.conftest import Broker
from tests.kafka_tools import kafka_options
from tests.processes import ROOT

pytestmark = pytest.mark.integration


def command(broker: Broker, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CLUSTERGRANTS_STATE_DIR": str(broker.credentials.path.parents[1])}
    return subprocess.run(
        [sys.executable, "-m", "deploy.local.kafka_users", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def authenticates(broker: Broker, user: str, password: str) -> bool:
    host, port = broker.bootstrap.rsplit(":", 1)
    try:
        conn = await create_conn(
            host,
            int(port),
            security_protocol="SASL_PLAINTEXT",
            sasl_mechanism="SCRAM-SHA-512",
            sasl_plain_username=user,
            sasl_plain_password=password,
        )
    except SaslAuthenticationFailed:
        return False
    conn.close()
    return True


async def test_a_portal_added_by_the_operator_may_submit_and_nothing_else_until_it_is_removed(broker: Broker) -> None:
    name = f"sec{secrets.token_hex(3)}"
    principal = f"portal-{name}"
    added = command(broker, "add-portal", name, "--topic-prefix", broker.prefix)
    try:
        assert added.returncode == 0, added.stdout + added.stderr
        store = KafkaCredentials.load(broker.credentials.path)
        password = store.passwords[principal]
        assert principal in store.portals
        assert password not in added.stdout + added.stderr, "the command never prints the password"
        handed_over = store.path.parent / f"{principal}.env"
        assert stat.S_IMODE(handed_over.stat().st_mode) == 0o600
        settings = read_dotenv(handed_over)
        assert settings["KAFKA_SASL_USERNAME"] == principal and settings["KAFKA_SASL_PASSWORD"] == password
        assert settings["KAFKA_BOOTSTRAP_SERVERS"] == broker.bootstrap

        assert await authenticates(broker, principal, password)
        await kafka_admin.wait_until_authorized(
            kafka_options(principal, broker.bootstrap), broker.name(Topic.APPLICATION_SUBMITTED)
        )
        await broker.produce(principal, Topic.APPLICATION_SUBMITTED)
        await broker.produce(principal, Topic.ASSESSMENT_SUBMITTED)
        for topic in (Topic.APPLICATION_RECEIVED, Topic.ELIGIBILITY_DECIDED, Topic.GRANT_COMMITTED, Topic.DEAD_LETTER):
            with pytest.raises(TopicAuthorizationFailedError):
                await broker.produce(principal, topic)
        listed = command(broker, "list")
        assert f"{principal}: Write topic clustergrants.applications.submitted.v1" in listed.stdout
    finally:
        removed = command(broker, "remove-portal", name)
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert principal not in KafkaCredentials.load(broker.credentials.path).portals
    assert not (broker.credentials.path.parent / f"{principal}.env").exists()
    admin = AIOKafkaAdminClient(**kafka_options(ADMIN, broker.bootstrap))
    await admin.start()
    try:
        assert not [acl for acl in await kafka_admin.describe_acls(admin) if acl[3] == f"User:{principal}"]
    finally:
        await admin.close()
    for _ in range(50):  # the credential's removal reaches the broker within moments
        if not await authenticates(broker, principal, password):
            break
        await asyncio.sleep(0.2)
    else:
        pytest.fail(f"{principal} still authenticates after remove-portal")


def test_the_command_refuses_what_cannot_be_a_portal(broker: Broker) -> None:
    for args, expected in ((("add-portal", "Bad_Name"), "cannot name a portal"), (("remove-portal", "test"), "stays")):
        result = command(broker, *args)
        assert result.returncode == 2, result.stdout + result.stderr
        assert expected in result.stderr and "Traceback" not in result.stderr
