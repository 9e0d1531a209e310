"""Signed webhooks to agency systems (httpx): CloudEvents HTTP binary mode plus an HMAC signature."""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx
import yaml

from services.notify.domain import DELIVERY_HEADER, SIGNATURE_HEADER, Subscription, Subscriptions, signature_header


class WebhookConfigError(Exception):
    """The subscriptions file is unreadable, invalid, or names a secret that is not set."""


def load_subscriptions(path: Path | None, environ: dict[str, str] | None = None) -> Subscriptions:
    """The subscriptions in `path` (none when unset); every secret must be set, at least 16 characters."""
    if path is None:
        return Subscriptions()
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        subscriptions = Subscriptions.model_validate(doc)
    except (OSError, yaml.YAMLError, ValueError) as error:
        raise WebhookConfigError(f"{path}: {error}") from None
    env = os.environ if environ is None else environ
    for s in subscriptions.subscriptions:
        if len(env.get(s.secret_env, "")) < 16:
            raise WebhookConfigError(
                f"subscription {s.id}: environment variable {s.secret_env} is unset or shorter than 16 characters"
            )
    return subscriptions


class WebhookFailed(Exception):
    """The receiver did not answer 2xx (or could not be reached)."""


class WebhookSender:
    def __init__(self, client: httpx.AsyncClient, environ: dict[str, str] | None = None) -> None:
        self.client = client
        self.environ = os.environ if environ is None else environ

    def secret(self, subscription: Subscription) -> bytes:
        return self.environ[subscription.secret_env].encode()

    async def send(self, subscription: Subscription, delivery_id: str, body: bytes, ce_headers: dict[str, str]) -> int:
        """POST `body`, signed now; returns the status code, raises WebhookFailed unless 2xx."""
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "clustergrants-notify/1",
            DELIVERY_HEADER: delivery_id,
            SIGNATURE_HEADER: signature_header(self.secret(subscription), timestamp, body),
            **ce_headers,
        }
        try:
            response = await self.client.post(str(subscription.url), content=body, headers=headers)
        except httpx.HTTPError as error:
            raise WebhookFailed(f"{type(error).__name__}") from None
        if not 200 <= response.status_code < 300:
            raise WebhookFailed(f"HTTP {response.status_code}")
        return response.status_code
