"""Every Kafka topic the platform uses, with its key, partition count and retention.

The stack creates them with :func:`ops.topics.ensure_topics` before any process starts, so that
partition counts are explicit and never left to broker defaults. docs/topology.md mirrors this.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from chat.settings import Settings
from tables import (
    activity,
    conversations,
    inbox,
    presence_subscribers,
    receipts,
    sequences,
    sessions,
    typing_state,
)


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    key: str
    writers: str
    readers: str
    config: dict[str, str] = field(default_factory=dict)


KEEP_FOREVER = {"retention.ms": "-1", "retention.bytes": "-1"}
COMPACTED = {"cleanup.policy": "compact", "min.compaction.lag.ms": "60000"}
ONE_DAY = {"retention.ms": str(24 * 3600 * 1000)}
ONE_HOUR = {"retention.ms": str(3600 * 1000)}
# A worker recovers a table by reading its whole changelog. Kafka compacts only closed segments,
# so they are rolled every 10 minutes (not after 7 days or 1 GiB) and cleaned once a fifth of the
# log is superseded rows: a restart then reads about one row per key, not every write.
CHANGELOG = {
    "cleanup.policy": "compact",
    "segment.ms": str(10 * 60 * 1000),
    "min.cleanable.dirty.ratio": "0.2",
}


# Faust tables and the partitioning of their keys (their changelogs are created with them).
CONVERSATION_TABLES = (
    conversations.TABLE,
    sequences.TABLE,
    receipts.TABLE,
    typing_state.TABLE,
    activity.TABLE,
)
USER_TABLES = (sessions.TABLE, inbox.TABLE, presence_subscribers.TABLE)


def changelog_name(settings: Settings, table: str) -> str:
    """The changelog topic of a worker table, named as Faust names them. Its keys are the raw
    key bytes of the source topic (``conversation_id`` or ``user_id``), so a changelog
    partition holds exactly the rows of the same partition of the source topic."""
    return f"{settings.worker_app_id}-{table}-changelog"


def changelog_specs(settings: Settings) -> list[TopicSpec]:
    """Changelog topics of the worker tables."""
    specs = []
    for tables, partitions, key in (
        (CONVERSATION_TABLES, settings.conversation_partitions, "conversation_id"),
        (USER_TABLES, settings.user_partitions, "user_id"),
    ):
        for table in tables:
            specs.append(
                TopicSpec(
                    changelog_name(settings, table),
                    partitions,
                    key,
                    "worker (table writes)",
                    "worker (recovery, standbys)",
                    dict(CHANGELOG),
                )
            )
    return specs


def topic_specs(settings: Settings) -> list[TopicSpec]:
    conv = settings.conversation_partitions
    return [
        TopicSpec(
            settings.topic("commands"),
            conv,
            "conversation_id",
            "edges, worker timers",
            "router",
            # Commands are the input of the router: keep them long enough to rebuild tables.
            dict(KEEP_FOREVER),
        ),
        TopicSpec(
            settings.topic("messages"),
            conv,
            "conversation_id",
            "router",
            "mongo sink",
            dict(KEEP_FOREVER),
        ),
        TopicSpec(
            settings.topic("conversations"),
            conv,
            "conversation_id",
            "router",
            "mongo sink",
            dict(COMPACTED),
        ),
        TopicSpec(
            settings.topic("receipts"),
            conv,
            "conversation_id|user",
            "router",
            "mongo sink",
            dict(COMPACTED),
        ),
        TopicSpec(
            settings.topic("users"),
            settings.user_partitions,
            "user_id",
            "router, edges, worker timers",
            "sessions agent",
            dict(ONE_DAY),
        ),
        TopicSpec(
            settings.topic("activity"),
            conv,
            "conversation_id",
            "activity agent (the example agent)",
            "dashboards, anything new",
            dict(COMPACTED),
        ),
        TopicSpec(
            settings.topic("deliver"),
            settings.deliver_partitions,
            "none (partition = edge slot)",
            "router (acks, errors), sessions agent",
            "the edge holding that slot",
            dict(ONE_HOUR),
        ),
    ]
