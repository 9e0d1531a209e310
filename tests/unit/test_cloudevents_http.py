"""CloudEvents over HTTP (binary mode), as notify's webhooks send them: one `ce-` header per attribute."""

from __future__ import annotations

import pytest

from shared.cloudevents import Attributes, to_http_headers

pytestmark = pytest.mark.unit


def test_the_required_attributes_are_always_sent_and_the_optional_ones_only_when_set() -> None:
    bare = Attributes(id="e-1", source="/clustergrants/budget", type="org.clustergrants.grant.committed.v1")
    assert to_http_headers(bare) == {
        "ce-specversion": "1.0",
        "ce-id": "e-1",
        "ce-type": "org.clustergrants.grant.committed.v1",
        "ce-source": "/clustergrants/budget",
    }
    full = Attributes(
        id="e-2",
        source="/clustergrants/eligibility",
        type="org.clustergrants.eligibility.decided.v1",
        time="2026-01-02T03:04:05Z",
        subject="APP-1",
        correlationid="sub-1",
        causationid="rec-1",
    )
    headers = to_http_headers(full)
    assert headers["ce-time"] == "2026-01-02T03:04:05Z"
    assert headers["ce-subject"] == "APP-1"
    assert headers["ce-correlationid"] == "sub-1"
    assert headers["ce-causationid"] == "rec-1"
    assert "content-type" not in {name.lower() for name in headers}  # the request's own header
