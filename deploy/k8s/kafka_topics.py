"""Render the Strimzi `KafkaTopic` resources from `shared/topics.py` (TOPIC_SPECS), so that the
topics a cluster gets cannot drift from the ones the code declares.

    python -m deploy.k8s.kafka_topics            # rewrite deploy/k8s/base/kafka/topics.yaml
    python -m deploy.k8s.kafka_topics --check    # exit 1 if the file is stale (the unit test does the same)

Partitions and `retention.ms` come from TOPIC_SPECS; replication (`replicas`, `min.insync.replicas`)
is a property of the cluster, set here for a small cluster and raised by the production overlay.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from shared.topics import TOPIC_SPECS, Topic  # noqa: E402

TOPICS_FILE = ROOT / "deploy" / "k8s" / "base" / "kafka" / "topics.yaml"

HEADER = """\
# GENERATED from shared/topics.py (TOPIC_SPECS) by `python -m deploy.k8s.kafka_topics`: do not edit.
# tests/unit/test_k8s_manifests.py fails when this file and TOPIC_SPECS disagree.
# One Strimzi KafkaTopic per topic; partitions and retention.ms as the code declares them.
# Replication here suits a single-broker cluster; overlays/production raises it (3 replicas,
# min.insync.replicas 2). The namespace and the strimzi.io/cluster label come from kustomization.yaml.
"""


def resource(topic: Topic) -> dict[str, Any]:
    spec = TOPIC_SPECS[topic]
    return {
        "apiVersion": "kafka.strimzi.io/v1",  # Strimzi 1.0 and later serve only v1
        "kind": "KafkaTopic",
        "metadata": {"name": topic.value},
        "spec": {
            # Topic names are valid Kubernetes names; topicName keeps the Kafka name explicit anyway.
            "topicName": topic.value,
            "partitions": spec.partitions,
            "replicas": 1,
            "config": {
                "retention.ms": spec.retention_ms,
                "cleanup.policy": "delete",
                "min.insync.replicas": 1,
            },
        },
    }


def render() -> str:
    docs = []
    for topic in Topic:
        spec = TOPIC_SPECS[topic]
        body = yaml.safe_dump(resource(topic), sort_keys=False, default_flow_style=False)
        days = spec.retention_ms / (24 * 60 * 60 * 1000)
        docs.append(f"# {spec.description} Retention {days:g} days.\n{body}")
    return HEADER + "---\n" + "---\n".join(docs)


def main(argv: list[str]) -> int:
    text = render()
    if argv[1:] == ["--check"]:
        if not TOPICS_FILE.exists() or TOPICS_FILE.read_text() != text:
            print(f"{TOPICS_FILE.relative_to(ROOT)} is stale: run `python -m deploy.k8s.kafka_topics`", file=sys.stderr)
            return 1
        return 0
    if argv[1:]:
        print(__doc__, file=sys.stderr)
        return 2
    TOPICS_FILE.write_text(text)
    print(f"wrote {TOPICS_FILE.relative_to(ROOT)} ({len(TOPIC_SPECS)} topics)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
