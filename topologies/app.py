"""The Faust application of the stream workers: its topics and its tables.

Start a worker with ``python -m topologies``. Every worker runs every agent; Kafka's consumer
group spreads the partitions (and so the table rows) over the running workers.
"""

from __future__ import annotations

from typing import Any

import faust

from chat.logs import json_logging_config
from chat.settings import Settings, load_settings
from chat.topics import CONVERSATION_TABLES, USER_TABLES, changelog_name
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
from topologies import faust_fixes

faust_fixes.apply()
settings: Settings = load_settings()

app = faust.App(
    settings.worker_app_id,
    broker=f"kafka://{settings.kafka_bootstrap}",
    store="memory://",
    datadir=settings.worker_data_dir,
    autodiscover=False,
    topic_partitions=settings.conversation_partitions,
    topic_replication_factor=settings.replication_factor,
    table_standby_replicas=settings.table_standby_replicas,
    producer_acks=-1,
    producer_linger=0.0,
    broker_commit_interval=1.0,
    # A worker that dies (kill -9) loses its partitions after this long, not Faust's 60 s.
    broker_session_timeout=10.0,
    broker_heartbeat_interval=2.0,
    consumer_auto_offset_reset="earliest",
    web_host=settings.metrics_host,
    web_port=settings.worker_web_port,
    web_in_thread=False,
    # Structured JSON lines like every other process (see chat/logs.py).
    logging_config=json_logging_config("worker", settings.log_level),
)


def _raw_topic(name: str, partitions: int) -> faust.TopicT:
    # Keys and values stay bytes: agents decode JSON with orjson themselves, and the key bytes
    # are exactly what the edges hashed to pick the partition.
    return app.topic(
        settings.topic(name),
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=partitions,
    )


commands_topic = _raw_topic("commands", settings.conversation_partitions)
messages_topic = _raw_topic("messages", settings.conversation_partitions)
conversations_topic = _raw_topic("conversations", settings.conversation_partitions)
receipts_topic = _raw_topic("receipts", settings.conversation_partitions)
users_topic = _raw_topic("users", settings.user_partitions)
deliver_topic = _raw_topic("deliver", settings.deliver_partitions)
activity_topic = _raw_topic("activity", settings.conversation_partitions)


def _table(name: str, partitions: int) -> Any:
    """A table whose changelog is keyed by the raw key bytes, like its source topic.

    Faust would serialize a ``str`` key to JSON (``"bob"`` with the quotes) for the changelog,
    and its partitioner would then hash other bytes than the edges hashed for the source topic:
    changelog partition p would not hold the rows of source partition p, and a worker taking
    over a partition would recover the wrong rows. The outbox writes the changelog records
    itself (see ``topologies/outbox.py``); this topic is how Faust reads them back.
    """
    changelog = app.topic(
        changelog_name(settings, name),
        key_type=str,
        value_type=None,
        key_serializer="raw",
        value_serializer="json",
        partitions=partitions,
        compacting=True,
        deleting=False,
        acks=False,
        internal=True,
        maxsize=131_072,
        allow_empty=True,
    )
    return app.Table(
        name,
        partitions=partitions,
        key_type=str,
        changelog_topic=changelog,
        use_partitioner=True,
    )


# Every table, declared from the lists that also create their changelogs (chat/topics.py).
# Keyed by conversation_id, co-partitioned with chat.commands; keyed by user_id, with chat.users.
tables: dict[str, Any] = {
    **{name: _table(name, settings.conversation_partitions) for name in CONVERSATION_TABLES},
    **{name: _table(name, settings.user_partitions) for name in USER_TABLES},
}
# Owned by the router.
conversations_table = tables[conversations.TABLE]
sequences_table = tables[sequences.TABLE]
receipts_table = tables[receipts.TABLE]
typing_table = tables[typing_state.TABLE]
# Owned by the activity agent (the example agent, topologies/activity.py).
activity_table = tables[activity.TABLE]
# Owned by the sessions agent.
sessions_table = tables[sessions.TABLE]
inbox_table = tables[inbox.TABLE]
presence_subscribers_table = tables[presence_subscribers.TABLE]
