"""TLS against real endpoints: a Kafka with a SASL_SSL listener and a PostgreSQL that accepts TLS only,
both started here from deploy/local/stack.py's classes (what `stack.py --tls` runs), with a CA and
server certificate that deploy/local/tls.py generates. The clients use nothing but the project's own
settings (KAFKA_SECURITY_PROTOCOL=SASL_SSL, KAFKA_SSL_CAFILE, DATABASE_SSL_MODE=verify-full,
DATABASE_SSL_ROOT_CERT); a client that trusts another CA is refused by both servers' certificates.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaConnectionError

from deploy.local import stack
from deploy.local import tls as local_tls
from shared.acl import ADMIN, DEV_PORTALS
from shared.db import create_pool
from shared.kafka_admin import create_topics
from shared.kafka_security import client_options
from shared.settings import CommonSettings, database_ssl
from shared.topics import Topic, topic_name
from tests.processes import free_port

pytestmark = pytest.mark.integration

PORTAL = DEV_PORTALS[-1]


@dataclass
class TlsServers:
    kafka: stack.Kafka
    postgres: stack.Postgres
    files: local_tls.TlsFiles


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_pair() -> int:
    """Two free consecutive ports (Kafka's client and controller listeners), below the kernel's
    ephemeral range: a port from that range that nothing listens on may still be the local end of
    some client's connection (and was: Kafka's controller then failed with "Address already in use")."""
    low, _ = (int(n) for n in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(max(1024, low - 12_000), low - 1)
        if _bindable(port) and _bindable(port + 1):
            return port
    raise RuntimeError("no two free consecutive ports below the ephemeral range")


@pytest.fixture(scope="module")
async def servers() -> AsyncIterator[TlsServers]:
    # A state folder of their own beside the stack's (kept between runs: the cluster is initialised once).
    state = stack.STATE / "tls-check"
    files = local_tls.ensure(state / "tls")
    postgres = stack.Postgres(state, free_port(), files)
    kafka = stack.Kafka(state, free_pair(), files, topic_prefix="", libs=stack.STATE / "kafka" / f"libs-{stack.KAFKA_VERSION}")
    try:
        await asyncio.to_thread(postgres.start)
        await asyncio.to_thread(kafka.start)
        options = kafka.options(ADMIN)
        await create_topics(options.pop("bootstrap_servers"), "", **options)
        yield TlsServers(kafka, postgres, files)
    finally:
        for server in (kafka, postgres):
            with contextlib.suppress(Exception):
                await asyncio.to_thread(server.stop)


@pytest.fixture
def settings_env(servers: TlsServers, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The environment a service of this deployment would have (as the tests' portal)."""
    assert servers.kafka.credentials is not None
    for name, value in {
        "KAFKA_BOOTSTRAP_SERVERS": servers.kafka.bootstrap,
        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "KAFKA_SASL_USERNAME": PORTAL,
        "KAFKA_SASL_PASSWORD": servers.kafka.credentials.passwords[PORTAL],
        "KAFKA_SSL_CAFILE": str(servers.files.ca_cert),
        "DATABASE_URL": servers.postgres.url,
        "DATABASE_SSL_MODE": "verify-full",
        "DATABASE_SSL_ROOT_CERT": str(servers.files.ca_cert),
    }.items():
        monkeypatch.setenv(name, value)
    return servers.files.ca_cert


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return local_tls.make_ca(tmp_path_factory.mktemp("other-ca"), "some other CA").ca_cert


def as_principal(settings: CommonSettings, principal: str, servers: TlsServers) -> CommonSettings:
    assert servers.kafka.credentials is not None
    return CommonSettings.model_validate(
        {
            **settings.model_dump(),
            "kafka_sasl_username": principal,
            "kafka_sasl_password": servers.kafka.credentials.passwords[principal],
        }
    )


async def test_kafka_over_sasl_ssl_produces_and_consumes_with_the_project_settings(
    servers: TlsServers, settings_env: Path
) -> None:
    settings = CommonSettings()
    assert settings.kafka_security_protocol == "SASL_SSL" and settings.kafka_ssl_cafile == str(settings_env)
    topic = topic_name(Topic.APPLICATION_SUBMITTED)
    producer = AIOKafkaProducer(**client_options(settings), enable_idempotence=True, acks="all")
    await producer.start()
    try:
        sent = await producer.send_and_wait(topic, b'{"over": "tls"}', key=b"tls-check")
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        topic, **client_options(as_principal(settings, "intake", servers)), auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    try:
        found = []
        for _ in range(40):
            for records in (await consumer.getmany(timeout_ms=500)).values():
                found += [r for r in records if r.partition == sent.partition and r.offset == sent.offset]
            if found:
                break
    finally:
        await consumer.stop()
    assert [r.value for r in found] == [b'{"over": "tls"}']


async def test_postgres_over_verified_tls_with_the_project_settings(servers: TlsServers, settings_env: Path) -> None:
    settings = CommonSettings()
    context = database_ssl(settings)
    assert isinstance(context, ssl.SSLContext) and context.check_hostname
    pool = await create_pool(settings.database_url.get_secret_value(), 1, 2, context)
    try:
        row = await pool.fetchrow("SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        assert row is not None
        assert row["ssl"] is True and row["version"].startswith("TLS")
        assert await pool.fetchval("SELECT count(*) FROM generate_series(1, 3)") == 3
    finally:
        await pool.close()


async def test_a_client_trusting_another_ca_is_refused_by_kafka(servers: TlsServers, settings_env: Path, other_ca: Path) -> None:
    wrong = CommonSettings(kafka_ssl_cafile=str(other_ca))
    admin = AIOKafkaAdminClient(**client_options(wrong), request_timeout_ms=5000)
    with pytest.raises(KafkaConnectionError):
        await admin.start()
    await admin.close()
    # The refusal is the certificate check itself (the same context the clients use).
    host, port = servers.kafka.bootstrap.rsplit(":", 1)
    with pytest.raises(ssl.SSLCertVerificationError):
        await asyncio.open_connection(host, int(port), ssl=client_options(wrong)["ssl_context"])
    _reader, writer = await asyncio.open_connection(host, int(port), ssl=client_options(CommonSettings())["ssl_context"])
    writer.close()  # ... while the project's CA is accepted on the same port
    # No TLS at all: SASL over plain TCP to the TLS listener does not get through either.
    plain = CommonSettings(kafka_security_protocol="SASL_PLAINTEXT")
    admin = AIOKafkaAdminClient(**client_options(plain), request_timeout_ms=5000)
    with pytest.raises(KafkaConnectionError):
        await admin.start()
    await admin.close()


async def test_a_client_trusting_another_ca_is_refused_by_postgres(
    servers: TlsServers, settings_env: Path, other_ca: Path
) -> None:
    wrong = CommonSettings(database_ssl_root_cert=str(other_ca))
    with pytest.raises(ssl.SSLCertVerificationError):
        # database_ssl answers a verifying context here (a root certificate is set), never a bare mode name
        await asyncpg.connect(wrong.database_url.get_secret_value(), ssl=database_ssl(wrong), timeout=10)  # type: ignore[arg-type]
    # Without TLS the server refuses the connection itself (pg_hba: hostnossl reject).
    with pytest.raises(asyncpg.InvalidAuthorizationSpecificationError, match="no encryption"):
        await asyncpg.connect(servers.postgres.url, ssl=False, timeout=10)
