"""Scheme families: the unit each scheme's rules scale by (eligibility instances, their consumer groups).

A family is a scheme id's first part (`vlaio.spearhead-cluster` -> `vlaio`). An eligibility instance
limited to some families (`ELIGIBILITY_SCHEMES`) consumes in a consumer group of its own per family
set, `clustergrants.eligibility.<family>` (shared/acl.py grants each), and decides only applications
of its families; Kubernetes runs one Deployment per family (deploy/k8s/eligibility_families.py).
"""

from __future__ import annotations

from typing import Literal, get_args

from shared.events import SchemeId

Family = Literal["vlaio", "ttc", "s3", "nic"]
FAMILIES: tuple[Family, ...] = get_args(Family)

#: The family whose instances also apply case handlers' findings and store assessors' scores, for
#: every scheme: officer-paced traffic, taken by ONE consumer group so each is applied exactly once.
CASE_EVENTS_FAMILY: Family = "vlaio"


def family_of(scheme: str) -> str:
    return scheme.split(".", 1)[0]


def schemes_of(family: str) -> tuple[str, ...]:
    return tuple(s for s in get_args(SchemeId) if family_of(s) == family)


def parse_families(value: str) -> tuple[Family, ...]:
    """`"vlaio,ttc"` -> ("ttc", "vlaio") (sorted, deduplicated); "" -> () (every family)."""
    names = sorted({part.strip() for part in value.split(",") if part.strip()})
    unknown = [n for n in names if n not in FAMILIES]
    if unknown:
        raise ValueError(f"unknown scheme families {unknown}; known: {list(FAMILIES)}")
    return tuple(n for n in FAMILIES if n in names)


def family_group(service: str, families: tuple[str, ...]) -> str:
    """The consumer group of an instance limited to `families` (all: the service's own group)."""
    if not families or set(families) == set(FAMILIES):
        return f"clustergrants.{service}"
    return f"clustergrants.{service}." + "+".join(sorted(families))
