"""Render one Strimzi `KafkaUser` per principal from shared/acl.py, so the cluster's ACLs cannot drift
from the table the local broker and the tests use.

    python -m deploy.k8s.kafka_users                 # rewrite deploy/k8s/base/kafka-users/users.yaml
    python -m deploy.k8s.kafka_users --check         # exit 1 if the file is stale (the unit test does the same)
    python -m deploy.k8s.kafka_users --portal acme   # print the KafkaUser of a new portal (kubectl apply -f -)

Each user authenticates with SCRAM-SHA-512; Strimzi's User Operator creates the credential and writes
the password into a Secret of the user's name (key `password`), which the Deployments read. The
base holds the services, the agency reader and the operator; portals are added per agency. Topic
names carry no prefix (TOPIC_PREFIX is empty on a cluster of its own).
"""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from shared.acl import AGENCY_READER, OPERATOR, SERVICES, grants, portal_name, role_of  # noqa: E402

USERS_FILE = ROOT / "deploy" / "k8s" / "base" / "kafka-users" / "users.yaml"
BASE_PRINCIPALS = (*SERVICES, AGENCY_READER, OPERATOR)

HEADER = """\
# GENERATED from shared/acl.py by `python -m deploy.k8s.kafka_users`: do not edit.
# tests/unit/test_k8s_manifests.py fails when this file and the table disagree.
# One Strimzi KafkaUser per principal: SCRAM-SHA-512, simple authorization, the table's ACLs. The
# User Operator writes each password into a Secret of the user's name (key `password`). Portals:
# `python -m deploy.k8s.kafka_users --portal NAME`. Namespace and strimzi.io/cluster label come from
# kustomization.yaml.
"""


def resource(principal: str) -> dict[str, Any]:
    """The KafkaUser of `principal`: one ACL rule per resource, with the operations the table grants."""
    operations: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    for grant in grants(principal):
        operations[(grant.resource, grant.name, grant.pattern)].append(grant.operation)
    acls = [
        {
            "resource": {"type": kind, "name": name, "patternType": pattern},
            "operations": sorted(ops),
            "host": "*",
            "type": "allow",
        }
        for (kind, name, pattern), ops in sorted(operations.items())
    ]
    return {
        "apiVersion": "kafka.strimzi.io/v1",
        "kind": "KafkaUser",
        "metadata": {"name": principal, "labels": {"app.kubernetes.io/component": f"kafka-user-{role_of(principal)}"}},
        "spec": {"authentication": {"type": "scram-sha-512"}, "authorization": {"type": "simple", "acls": acls}},
    }


def render(principals: tuple[str, ...] = BASE_PRINCIPALS) -> str:
    docs = [yaml.safe_dump(resource(p), sort_keys=False, default_flow_style=False) for p in principals]
    return HEADER + "---\n" + "---\n".join(docs)


def main(argv: list[str]) -> int:
    if argv[1:2] == ["--portal"] and len(argv) == 3:
        try:
            principal = portal_name(argv[2])
        except ValueError as error:
            print(f"kafka_users: {error}", file=sys.stderr)
            return 2
        user = resource(principal)
        user["metadata"]["labels"]["strimzi.io/cluster"] = "clustergrants"
        print(yaml.safe_dump(user, sort_keys=False, default_flow_style=False), end="")
        return 0
    text = render()
    if argv[1:] == ["--check"]:
        if not USERS_FILE.exists() or USERS_FILE.read_text() != text:
            print(f"{USERS_FILE.relative_to(ROOT)} is stale: run `python -m deploy.k8s.kafka_users`", file=sys.stderr)
            return 1
        return 0
    if argv[1:]:
        print(__doc__, file=sys.stderr)
        return 2
    USERS_FILE.parent.mkdir(parents=True, exist_ok=True)
    USERS_FILE.write_text(text)
    print(f"wrote {USERS_FILE.relative_to(ROOT)} ({len(BASE_PRINCIPALS)} users)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
