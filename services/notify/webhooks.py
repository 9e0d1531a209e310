"""Webhooks to agency systems per the Standard Webhooks specification (standardwebhooks.com),
signed with its maintained Python library (`standardwebhooks`), sent with aiohttp (kept-alive
connections; about a sixth of httpx's CPU per request, README: Performance); the CloudEvents
attributes travel as `ce-*` headers (HTTP binding, binary mode).

    webhook-id:        the notification id: the same on every retry (receivers deduplicate on it)
    webhook-timestamp: unix seconds of this attempt (each retry is signed anew)
    webhook-signature: v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">, one per active secret,
                       space-separated: during a rotation both the new and the previous secret sign

Secrets are `whsec_` + base64 of 24 to 64 random bytes (the specification's range); the
subscriptions file names the environment variables that hold them, never the secrets. An http URL
is accepted only for a loopback receiver marked `local` (services/notify/domain.py).

A receiver is not trusted: a redirect is not followed (3xx is a failed attempt), cookies it sets are
never sent back (to it or to another subscription), at most `RESPONSE_READ_BYTES` of its answer are
read (a longer answer only costs the connection), and every attempt is bounded by
NOTIFY_WEBHOOK_TIMEOUT_S as a whole: connecting, sending and reading the answer.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import yaml
from standardwebhooks import Webhook

from services.notify.domain import Subscription, Subscriptions

SECRET_PREFIX = "whsec_"  # noqa: S105 (the format's prefix, not a secret)
SECRET_BYTES = (24, 64)
ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"
#: What is read of a receiver's answer (its status is what counts): enough to keep the connection for
#: an ordinary answer, and a bound on what a hostile receiver can make notify read.
RESPONSE_READ_BYTES = 64 * 1024


class WebhookConfigError(Exception):
    """The subscriptions file is unreadable, invalid, or names a secret that is unset or malformed."""


def new_secret() -> str:
    """A fresh signing secret in the specification's format (32 random bytes)."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def secret_problem(value: str) -> str | None:
    """Why `value` is not a Standard Webhooks secret (None: it is). Never quotes the value."""
    if not value:
        return "is unset"
    if not value.startswith(SECRET_PREFIX):
        return f"must start with {SECRET_PREFIX} (then base64 of {SECRET_BYTES[0]}-{SECRET_BYTES[1]} random bytes)"
    encoded = value[len(SECRET_PREFIX) :]
    try:
        raw = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)  # padding optional, as the library has it
    except (binascii.Error, ValueError):
        return f"is not {SECRET_PREFIX} followed by base64"
    if not SECRET_BYTES[0] <= len(raw) <= SECRET_BYTES[1]:
        return f"must encode {SECRET_BYTES[0]}-{SECRET_BYTES[1]} bytes, not {len(raw)}"
    return None


def load_subscriptions(path: Path | None, environ: Mapping[str, str] | None = None) -> Subscriptions:
    """The subscriptions in `path` (none when unset); every secret they name must be set and valid."""
    if path is None:
        return Subscriptions()
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        subscriptions = Subscriptions.model_validate(doc)
    except (OSError, yaml.YAMLError, ValueError) as error:
        raise WebhookConfigError(f"{path}: {error}") from None
    env = os.environ if environ is None else environ
    for s in subscriptions.subscriptions:
        for name in s.secret_envs:
            problem = secret_problem(env.get(name, ""))
            if problem is not None:
                raise WebhookConfigError(f"subscription {s.id}: environment variable {name} {problem}")
    return subscriptions


def signature_header(secret_values: Sequence[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value: one `v1,<base64>` per secret, space-separated (the library signs)."""
    at = datetime.fromtimestamp(timestamp, UTC)
    return " ".join(Webhook(value).sign(msg_id=msg_id, timestamp=at, data=body.decode("utf-8")) for value in secret_values)


def signed_headers(secret_values: Sequence[str], msg_id: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """The three Standard Webhooks headers of one attempt."""
    now = int(time.time()) if timestamp is None else timestamp
    return {
        ID_HEADER: msg_id,
        TIMESTAMP_HEADER: str(now),
        SIGNATURE_HEADER: signature_header(secret_values, msg_id, now, body),
    }


class WebhookFailed(Exception):
    """The receiver did not answer 2xx (or could not be reached)."""


def http_session(timeout_s: float, connections: int = 100) -> aiohttp.ClientSession:
    """The one HTTP client of a notify process (call it inside the running event loop): a bounded
    pool of kept-alive connections, no cookies, no proxy from the environment, TLS verified."""
    return aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=timeout_s),
        connector=aiohttp.TCPConnector(limit=connections, limit_per_host=connections),
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
        trust_env=False,
    )


class WebhookSender:
    def __init__(self, session: aiohttp.ClientSession, environ: Mapping[str, str] | None = None) -> None:
        self.session = session
        self.environ = os.environ if environ is None else environ

    def secrets_of(self, subscription: Subscription) -> list[str]:
        """The active secrets, current first (load_subscriptions checked them at start-up)."""
        return [self.environ[name] for name in subscription.secret_envs]

    async def send(self, subscription: Subscription, delivery_id: str, body: bytes, ce_headers: dict[str, str]) -> int:
        """POST `body`, signed now; returns the status code, raises WebhookFailed unless 2xx."""
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "clustergrants-notify/1",
            **signed_headers(self.secrets_of(subscription), delivery_id, body),
            **ce_headers,
        }
        try:
            async with self.session.post(str(subscription.url), data=body, headers=headers, allow_redirects=False) as response:
                status = response.status
                read = 0
                while read < RESPONSE_READ_BYTES and (chunk := await response.content.read(RESPONSE_READ_BYTES - read)):
                    read += len(chunk)
        except (aiohttp.ClientError, TimeoutError, ValueError) as error:
            raise WebhookFailed(f"{type(error).__name__}") from None
        if not 200 <= status < 300:
            raise WebhookFailed(f"HTTP {status}")
        return status
