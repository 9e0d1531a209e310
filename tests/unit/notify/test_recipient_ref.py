"""recipient_ref is a keyed HMAC (issue 10, part 5): without the operator's key, a list of addresses cannot
be hashed and matched against log lines; notify refuses to start without a key."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime

import pytest

from services.notify.domain import Subscriptions, plan, recipient_ref
from shared.events import ApplicationRejected, Contact, FieldError
from tests.processes import ROOT

pytestmark = pytest.mark.unit

KEY = b"k" * 32


def test_the_reference_depends_on_the_key_not_only_on_the_address() -> None:
    ref = recipient_ref("An.Demo@example.org ", KEY)
    assert ref == recipient_ref("an.demo@example.org", KEY), "normalised: case and spaces"
    assert ref != recipient_ref("an.demo@example.org", b"x" * 32)
    assert ref.startswith("email:") and "@" not in ref and len(ref) == len("email:") + 32
    unsalted = hashlib.sha256(b"an.demo@example.org").hexdigest()
    assert unsalted[:24] not in ref and unsalted[:32] not in ref, "not the old, unkeyed hash"


def test_a_short_key_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 32"):
        recipient_ref("a@example.org", b"short")


def rejection(reason: str, **fields: object) -> ApplicationRejected:
    return ApplicationRejected(
        rejection_id=str(uuid.uuid4()),
        rejected_at=datetime(2024, 1, 1, tzinfo=UTC),
        channel="http",
        reason=reason,  # type: ignore[arg-type]  # one of the Literal's, parametrised
        errors=[FieldError(loc=["application_id"], type="application_id_conflict", message="taken")],
        **fields,  # type: ignore[arg-type]  # the fields under test
    )


def test_a_conflicting_resubmission_is_never_emailed_an_invalid_one_is() -> None:
    contact = Contact(name="An Demo", email="an.demo@example.org")
    conflict = rejection("conflict", conflicts_with="APP-1", language="nl")
    assert conflict.key() == conflict.rejection_id, "keyed by its own id, not the received application's"
    assert [p.channel for p in plan(conflict, Subscriptions(), ref_key=KEY)] == []
    invalid = rejection("invalid", application_id="APP-2", contact=contact, language="nl")
    assert [(p.channel, p.template) for p in plan(invalid, Subscriptions(), ref_key=KEY)] == [("email", "application.rejected")]


@pytest.mark.parametrize("key", [None, "too-short"])
def test_notify_refuses_to_start_without_a_key(key: str | None) -> None:
    env = {k: v for k, v in os.environ.items() if k != "NOTIFY_RECIPIENT_REF_KEY"}
    env.update({"LOG_FORMAT": "json", "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none", "STARTUP_TIMEOUT_S": "0"})
    if key is not None:
        env["NOTIFY_RECIPIENT_REF_KEY"] = key
    done = subprocess.run(
        [sys.executable, "-m", "services.notify"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 78, done.stderr[-2000:]
    assert "NOTIFY_RECIPIENT_REF_KEY" in done.stderr
    if key is not None:
        assert key not in done.stderr
