"""Each scheme family scales on its own: an instance limited to families decides only theirs, in a
consumer group of its own, and the four families' instances together decide every application once.

Why exactly once: every family's consumer group reads EVERY record of applications.received.v1 (Kafka
gives each group all records), and its instances share the group's partitions, so within a group a
record is handled by one instance (and its inbox, keyed by the group, drops a redelivery). An instance
decides a record only if the application's scheme is of its family, and every scheme is of exactly
one family: the record is decided by exactly one group, once. Records of other families are claimed in
the group's inbox and skipped, never lost: their own family's group reads them too. Findings and
assessments (every scheme's) are taken by one group only, CASE_EVENTS_FAMILY's."""

from __future__ import annotations

from typing import get_args

import pytest
from pydantic import ValidationError

from services.eligibility.app import decides, takes_case_events
from services.eligibility.settings import EligibilitySettings
from shared.acl import grants
from shared.events import SchemeId
from shared.schemes import CASE_EVENTS_FAMILY, FAMILIES, family_group, parse_families, schemes_of

pytestmark = pytest.mark.unit


def test_every_scheme_is_decided_by_exactly_one_family_instance() -> None:
    for scheme in get_args(SchemeId):
        deciding = [family for family in FAMILIES if decides((family,), scheme)]
        assert len(deciding) == 1, (scheme, deciding)
        assert decides((), scheme)  # the all-families instance decides everything
    assert sorted(s for f in FAMILIES for s in schemes_of(f)) == sorted(get_args(SchemeId))
    assert all(schemes_of(f) for f in FAMILIES)  # no family without a scheme


def test_case_events_are_taken_by_one_family_group_only() -> None:
    assert [f for f in FAMILIES if takes_case_events((f,))] == [CASE_EVENTS_FAMILY]
    assert takes_case_events(())


def test_each_family_has_its_own_consumer_group_and_the_acls_cover_it() -> None:
    groups = {family_group("eligibility", (f,)) for f in FAMILIES}
    assert groups == {f"clustergrants.eligibility.{f}" for f in FAMILIES}
    assert family_group("eligibility", ()) == family_group("eligibility", FAMILIES) == "clustergrants.eligibility"
    assert family_group("eligibility", ("vlaio", "ttc")) == "clustergrants.eligibility.ttc+vlaio"
    allowed = [g for g in grants("eligibility") if g.resource == "group"]
    for group in [*groups, "clustergrants.eligibility", "clustergrants.eligibility.ttc+vlaio"]:
        assert any(group == g.name or (g.pattern == "prefix" and group.startswith(g.name)) for g in allowed), group
    # Nobody else may join them.
    for principal in ("intake", "budget", "notify"):
        assert not any(g.name.startswith("clustergrants.eligibility") for g in grants(principal) if g.resource == "group")


def test_the_setting_is_read_and_checked() -> None:
    assert EligibilitySettings(eligibility_schemes="").families == ()
    assert EligibilitySettings(eligibility_schemes=" vlaio , ttc,ttc").families == ("vlaio", "ttc")
    with pytest.raises(ValidationError, match="unknown scheme families"):
        EligibilitySettings(eligibility_schemes="vlaio,flanders")
    assert parse_families("nic") == ("nic",)
