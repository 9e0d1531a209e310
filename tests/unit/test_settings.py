"""Settings: TLS and SASL switch on by environment variables; secrets never show."""

from __future__ import annotations

import ssl

import pytest
from pydantic import SecretStr

from shared.kafka_security import client_options
from shared.settings import CommonSettings, database_ssl

pytestmark = pytest.mark.unit


def test_plaintext_by_default() -> None:
    options = client_options(CommonSettings(kafka_bootstrap_servers="k:9092"))
    assert options == {"bootstrap_servers": "k:9092"}
    assert database_ssl(CommonSettings()) is None


def test_sasl_over_tls_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("KAFKA_SASL_USERNAME", "clustergrants")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", "s3cr3t-value")
    settings = CommonSettings()
    options = client_options(settings)
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["sasl_plain_username"] == "clustergrants" and options["sasl_plain_password"] == "s3cr3t-value"
    assert isinstance(options["ssl_context"], ssl.SSLContext)
    assert options["ssl_context"].verify_mode == ssl.CERT_REQUIRED
    assert "s3cr3t-value" not in repr(settings) and "s3cr3t-value" not in str(settings.model_dump())


def test_sasl_without_credentials_is_refused_with_the_names_to_set() -> None:
    with pytest.raises(ValueError, match="KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"):
        client_options(CommonSettings(kafka_security_protocol="SASL_PLAINTEXT"))


def test_tls_only_and_postgres_tls_modes() -> None:
    options = client_options(CommonSettings(kafka_security_protocol="SSL"))
    assert options["security_protocol"] == "SSL" and "sasl_mechanism" not in options
    assert database_ssl(CommonSettings(database_ssl_mode="require")) == "require"
    full = database_ssl(CommonSettings(database_ssl_mode="verify-full"))
    assert isinstance(full, ssl.SSLContext) and full.check_hostname
    ca_only = database_ssl(CommonSettings(database_ssl_mode="verify-ca"))
    assert isinstance(ca_only, ssl.SSLContext) and not ca_only.check_hostname


def test_the_database_password_never_shows() -> None:
    settings = CommonSettings(database_url=SecretStr("postgresql://app:pa55word@db:5432/cg"))
    assert "pa55word" not in repr(settings)
