"""Create the platform's topics with explicit partitions and configs: ``python -m ops.topics``."""

from __future__ import annotations

import asyncio
import sys

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from chat.kafka_security import aiokafka_kwargs, exit_unless_kafka_accepts
from chat.settings import Settings, load_settings
from chat.topics import topic_specs
from topologies.topology import changelog_specs


async def ensure_topics(settings: Settings) -> list[str]:
    admin = AIOKafkaAdminClient(**aiokafka_kwargs(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        new = [
            NewTopic(
                spec.name, spec.partitions, settings.replication_factor, topic_configs=spec.config
            )
            for spec in topic_specs(settings) + changelog_specs(settings)
            if spec.name not in existing
        ]
        if new:
            await admin.create_topics(new)
        return [t.name for t in new]
    finally:
        await admin.close()


def main() -> None:
    settings = load_settings()
    exit_unless_kafka_accepts(settings, "topics")
    created = asyncio.run(ensure_topics(settings))
    print(f"topics created: {', '.join(created) or 'none (all exist)'}", file=sys.stderr)


if __name__ == "__main__":
    main()
