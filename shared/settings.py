"""Settings shared by every service, read from environment variables (pydantic-settings).

Each service extends `CommonSettings` in its own `settings.py`; only the composition root reads them.
"""

from __future__ import annotations

import ssl
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class CommonSettings(BaseSettings):
    model_config = SettingsConfigDict(env_file=None, extra="ignore", frozen=True)

    kafka_bootstrap_servers: str = Field(default="127.0.0.1:29092", description="Kafka bootstrap servers.")
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT", description="How to talk to Kafka: TLS and/or SASL."
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        default="SCRAM-SHA-512", description="SASL mechanism when the protocol is SASL_*."
    )
    kafka_sasl_username: str | None = Field(default=None, description="SASL user.")
    kafka_sasl_password: SecretStr | None = Field(default=None, description="Secret: never logged.")
    kafka_ssl_cafile: str | None = Field(default=None, description="CA bundle that signed the brokers' certificates.")
    kafka_ssl_certfile: str | None = Field(default=None, description="Client certificate (mutual TLS).")
    kafka_ssl_keyfile: str | None = Field(default=None, description="Client key (mutual TLS).")
    database_url: SecretStr = Field(
        default=SecretStr("postgresql://clustergrants@127.0.0.1:25432/clustergrants"),
        description="PostgreSQL DSN (may hold a password: never logged).",
    )
    database_ssl_mode: Literal["disable", "prefer", "require", "verify-ca", "verify-full"] | None = Field(
        default=None, description="PostgreSQL TLS; unset: as DATABASE_URL's sslmode says (libpq default 'prefer')."
    )
    database_ssl_root_cert: str | None = Field(default=None, description="CA bundle for verify-ca / verify-full.")
    topic_prefix: str = Field(default="", description="Prefix of every topic name (environments, test runs).")
    log_format: Literal["auto", "json", "console"] = Field(default="auto", description="auto: JSON unless on a terminal.")
    log_level: str = Field(default="INFO", description="DEBUG, INFO, WARNING or ERROR.")
    db_pool_min: int = Field(default=2, ge=1, description="PostgreSQL connections kept open per process.")
    db_pool_max: int = Field(default=10, ge=1, description="Most PostgreSQL connections per process.")
    handler_max_attempts: int = Field(
        default=3, ge=1, description="Attempts at a failing message before it is parked on the dead-letter topic."
    )
    handler_retry_backoff_s: float = Field(default=0.2, ge=0, description="First back-off between attempts; doubles.")
    outbox_poll_interval_s: float = Field(default=0.5, gt=0, description="Outbox relay poll interval when idle.")
    outbox_batch_size: int = Field(default=500, ge=1, description="Outbox rows the relay publishes per round.")
    consumer_batch_max: int = Field(
        default=100,
        ge=1,
        description="Records handled in one transaction and one offset commit, of any of the service's topics (1: one by one).",
    )
    consumer_batch_timeout_ms: int = Field(
        default=50, ge=0, description="How long one read of the consumer waits for a first record before it reads again."
    )
    consumer_linger_ms: int = Field(
        default=10,
        ge=0,
        le=1_000,
        description=(
            "How long a read goes on reading after its first record while the batch is short of"
            " CONSUMER_BATCH_MAX (0: hand on what one read returns)."
        ),
    )
    startup_timeout_s: float = Field(
        default=120, ge=0, description="How long a starting service waits for PostgreSQL and Kafka to come up."
    )
    ops_http_host: str = Field(default="127.0.0.1", description="Address of /healthz, /readyz, /metrics (0.0.0.0 in a pod).")
    ops_http_port: int = Field(default=8081, description="Port of /healthz, /readyz, /metrics.")
    clustergrants_fault_exit_after_commits: int = Field(
        default=0,
        ge=0,
        description="Crash tests only: exit abruptly after the N-th committed batch, before its offset commit.",
    )


def ssl_context(cafile: str | None, certfile: str | None = None, keyfile: str | None = None) -> ssl.SSLContext:
    """A client TLS context that verifies the server (against `cafile`, else the system store)."""
    context = ssl.create_default_context(cafile=cafile)
    if certfile:
        context.load_cert_chain(certfile, keyfile)
    return context


def database_ssl(settings: CommonSettings) -> ssl.SSLContext | str | None:
    """The `ssl` argument for asyncpg: a verifying context for verify-*, else the mode's name."""
    mode = settings.database_ssl_mode
    if mode in ("verify-ca", "verify-full"):
        context = ssl_context(settings.database_ssl_root_cert)
        context.check_hostname = mode == "verify-full"
        return context
    return mode
