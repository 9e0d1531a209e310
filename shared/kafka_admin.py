"""Create the project's topics (idempotent): `python -m shared.kafka_admin create-topics`."""

from __future__ import annotations

import asyncio
import os
import sys

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from shared.topics import TOPIC_SPECS, topic_name


async def create_topics(bootstrap: str, prefix: str = "", replication: int = 1) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(
                topic_name(topic, prefix),
                num_partitions=spec.partitions,
                replication_factor=replication,
                topic_configs={"retention.ms": str(spec.retention_ms)},
            )
            for topic, spec in TOPIC_SPECS.items()
            if topic_name(topic, prefix) not in existing
        ]
        if wanted:
            try:
                await admin.create_topics(wanted)
            except TopicAlreadyExistsError:
                pass  # another process created them first
        return [t.name for t in wanted]
    finally:
        await admin.close()


def main() -> None:
    if sys.argv[1:] != ["create-topics"]:
        sys.exit("usage: python -m shared.kafka_admin create-topics")
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:39092")
    created = asyncio.run(create_topics(bootstrap, os.environ.get("TOPIC_PREFIX", "")))
    print(f"topics created: {len(created)}", file=sys.stderr)


if __name__ == "__main__":
    main()
