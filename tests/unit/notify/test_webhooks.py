"""Webhook signatures per the Standard Webhooks specification, checked with the specification's own
Python verifier (`standardwebhooks.Webhook.verify`) and, independently, by recomputing the HMAC
the way the specification describes it; https unless a loopback receiver is marked local."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

import pytest
from pydantic import ValidationError
from standardwebhooks import Webhook, WebhookVerificationError

from services.notify.domain import Subscription
from services.notify.webhooks import new_secret, secret_problem, signed_headers

pytestmark = pytest.mark.unit

BODY = b'{"application_id":"VLAIO-2020-0042","amount":{"amount_minor":40000000,"currency":"EUR"}}'
MSG_ID = "7c1d3b5e-2f7a-4d1e-9a57-0c7c2b1d5e10"


def test_the_libraries_verifier_accepts_our_delivery_and_refuses_tampering_replays_and_other_secrets() -> None:
    secret = new_secret()
    headers = signed_headers([secret], MSG_ID, BODY)
    assert set(headers) == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    assert headers["webhook-id"] == MSG_ID
    assert headers["webhook-signature"].startswith("v1,")
    assert Webhook(secret).verify(BODY, headers) == {
        "application_id": "VLAIO-2020-0042",
        "amount": {"amount_minor": 40000000, "currency": "EUR"},
    }

    with pytest.raises(WebhookVerificationError, match="No matching signature"):
        Webhook(secret).verify(BODY.replace(b"40000000", b"90000000"), headers)  # tampered body
    with pytest.raises(WebhookVerificationError, match="No matching signature"):
        Webhook(secret).verify(BODY, {**headers, "webhook-id": MSG_ID[:-1] + "1"})  # the id is signed too
    with pytest.raises(WebhookVerificationError, match="No matching signature"):
        Webhook(new_secret()).verify(BODY, headers)  # another secret
    stale = signed_headers([secret], MSG_ID, BODY, timestamp=int(time.time()) - 6 * 60)
    with pytest.raises(WebhookVerificationError, match="too old"):
        Webhook(secret).verify(BODY, stale)  # replayed after the 5-minute tolerance
    with pytest.raises(WebhookVerificationError, match="Missing required headers"):
        Webhook(secret).verify(BODY, {k: v for k, v in headers.items() if k != "webhook-signature"})


def test_the_signature_is_the_specifications_hmac_over_id_timestamp_and_body() -> None:
    raw = bytes(range(32))
    secret = "whsec_" + base64.b64encode(raw).decode()
    headers = signed_headers([secret], MSG_ID, BODY, timestamp=1_700_000_000)
    expected = hmac.new(raw, f"{MSG_ID}.1700000000.".encode() + BODY, hashlib.sha256).digest()
    assert headers["webhook-timestamp"] == "1700000000"
    assert headers["webhook-signature"] == "v1," + base64.b64encode(expected).decode()


def test_during_a_rotation_both_secrets_sign_and_either_verifies() -> None:
    new, old = new_secret(), new_secret()
    headers = signed_headers([new, old], MSG_ID, BODY)
    signatures = headers["webhook-signature"].split(" ")
    assert len(signatures) == 2 and all(s.startswith("v1,") for s in signatures)
    assert Webhook(new).verify(BODY, headers) is not None  # a receiver already on the new secret
    assert Webhook(old).verify(BODY, headers) is not None  # a receiver still on the old one
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(BODY, headers)


def test_secrets_must_be_whsec_base64_of_24_to_64_bytes() -> None:
    assert secret_problem(new_secret()) is None
    assert secret_problem("whsec_" + base64.b64encode(b"x" * 24).decode().rstrip("=")) is None  # padding optional
    assert secret_problem("") == "is unset"
    assert "must start with whsec_" in str(secret_problem("s3cret-s3cret-s3cret-s3cret"))
    assert "not 23" in str(secret_problem("whsec_" + base64.b64encode(b"x" * 23).decode()))
    assert "not 65" in str(secret_problem("whsec_" + base64.b64encode(b"x" * 65).decode()))


def subscription(url: str, **extra: object) -> Subscription:
    return Subscription.model_validate(
        {"id": "agency", "url": url, "events": ["org.clustergrants.grant.committed.v1"], "secret_env": "S", **extra}
    )


def test_https_is_required_unless_a_loopback_receiver_is_marked_local() -> None:
    assert subscription("https://erp.agency.example/hooks").url.scheme == "https"
    with pytest.raises(ValidationError, match="url must be https"):
        subscription("http://erp.agency.example/hooks")
    with pytest.raises(ValidationError, match="url must be https"):
        subscription("http://127.0.0.1:8080/hooks")  # loopback, but not marked local
    with pytest.raises(ValidationError, match="loopback receivers only"):
        subscription("http://erp.agency.example/hooks", local=True)
    with pytest.raises(ValidationError, match="loopback receivers only"):
        subscription("http://10.0.0.5/hooks", local=True)
    for url in ("http://127.0.0.1:8080/hooks", "http://localhost:8080/hooks", "http://[::1]:8080/hooks"):
        assert subscription(url, local=True).local
    with pytest.raises(ValidationError, match="another variable"):
        subscription("https://erp.agency.example/hooks", previous_secret_env="S")
    assert subscription("https://erp.agency.example/hooks", previous_secret_env="S_OLD").secret_envs == ("S", "S_OLD")
