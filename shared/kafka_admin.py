"""Create the project's topics (idempotent): `python -m shared.kafka_admin create-topics`."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from shared.kafka_security import client_options
from shared.settings import CommonSettings
from shared.topics import TOPIC_SPECS, topic_name


async def create_topics(bootstrap: str, prefix: str = "", replication: int = 1, **options: Any) -> list[str]:
    """Create the missing topics; `options` are aiokafka security settings (see shared.kafka_security)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **options)
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
            with contextlib.suppress(TopicAlreadyExistsError):  # another process created them first
                await admin.create_topics(wanted)
        return [t.name for t in wanted]
    finally:
        await admin.close()


def main() -> None:
    if sys.argv[1:] != ["create-topics"]:
        sys.exit("usage: python -m shared.kafka_admin create-topics")
    settings = CommonSettings()
    options = client_options(settings)
    bootstrap = options.pop("bootstrap_servers")
    created = asyncio.run(create_topics(bootstrap, settings.topic_prefix, **options))
    print(f"topics created: {len(created)}", file=sys.stderr)


if __name__ == "__main__":
    main()
