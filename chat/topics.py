"""Every Kafka topic the platform uses, with its key, partition count and retention.

The stack creates them with :func:`ops.topics.ensure_topics` before any process starts, so that
partition counts are explicit and never left to broker defaults. docs/topology.md mirrors this.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from chat.settings import Settings


@dataclass(frozen=True)
class TopicSpec:
    short: str  # the name without the deployment's prefix: "commands"
    name: str
    partitions: int
    key: str
    writers: str
    readers: str
    config: dict[str, str] = field(default_factory=dict)
    # Internal topics carry bundles (see chat/records.py): a record is a JSON array of events.
    bundled: bool = False


KEEP_FOREVER = {"retention.ms": "-1", "retention.bytes": "-1"}
COMPACTED = {"cleanup.policy": "compact", "min.compaction.lag.ms": "60000"}
ONE_DAY = {"retention.ms": str(24 * 3600 * 1000)}
ONE_HOUR = {"retention.ms": str(3600 * 1000)}
ONE_WEEK = {"retention.ms": str(7 * 24 * 3600 * 1000)}
# A worker recovers a table by reading its whole changelog. Kafka compacts only closed segments,
# so they are rolled every 10 minutes (not after 7 days or 1 GiB) and cleaned once a fifth of the
# log is superseded rows: a restart then reads about one row per key, not every write.
CHANGELOG = {
    "cleanup.policy": "compact",
    "segment.ms": str(10 * 60 * 1000),
    "min.cleanable.dirty.ratio": "0.2",
}


def changelog_name(settings: Settings, table: str) -> str:
    """The changelog topic of a worker table, named as Faust names them. Its keys are the raw
    key bytes of the source topic (``conversation_id`` or ``user_id``), so a changelog
    partition holds exactly the rows of the same partition of the source topic."""
    return f"{settings.worker_app_id}-{table}-changelog"


def topic_specs(settings: Settings) -> list[TopicSpec]:
    conv = settings.conversation_partitions

    def spec(
        short: str,
        partitions: int,
        key: str,
        writers: str,
        readers: str,
        config: dict[str, str],
        bundled: bool = False,
    ) -> TopicSpec:
        return TopicSpec(
            short, settings.topic(short), partitions, key, writers, readers, dict(config), bundled
        )

    return [
        # Commands are the input of the router: kept forever, so that tables can be rebuilt.
        spec(
            "commands",
            conv,
            "conversation_id (bundles: partition = hash of it)",
            "edges, worker timers",
            "router",
            KEEP_FOREVER,
            bundled=True,
        ),
        spec("messages", conv, "conversation_id", "router", "mongo sink", KEEP_FOREVER),
        spec("conversations", conv, "conversation_id", "router", "mongo sink", COMPACTED),
        spec("receipts", conv, "conversation_id|user", "router", "mongo sink", COMPACTED),
        spec(
            "users",
            settings.user_partitions,
            "user_id (bundles: partition = hash of it)",
            "router, edges, worker timers",
            "sessions agent",
            ONE_DAY,
            bundled=True,
        ),
        spec(
            "activity",
            conv,
            "conversation_id",
            "activity agent (the example agent)",
            "dashboards, anything new",
            COMPACTED,
        ),
        # Every moderation decision the router applied, with its evidence: the audit trail
        # and the moderators' queue (docs/moderation.md). Kept like the messages it judges.
        spec(
            "moderation",
            conv,
            "conversation_id (user:<id> for a sanction, policy for the rules)",
            "router",
            "mongo sink, anything new",
            KEEP_FOREVER,
        ),
        # The spam detector's stages (docs/moderation.md#spam-detection): a message's signatures
        # (text bands, links) keyed by its sender, then the signatures a sender spreads, keyed
        # by the signature. Derived from chat.messages and only looked at within minutes: a day
        # is plenty.
        spec(
            "spam-signals",
            conv,
            "sender user_id (bundles: partition = hash of it)",
            "detectors agent, spam-senders timer (expiry)",
            "spam-senders agent",
            ONE_DAY,
            bundled=True,
        ),
        spec(
            "spam-spreads",
            conv,
            "signature (bundles: partition = hash of it)",
            "spam-senders agent, spam-campaigns timer (expiry)",
            "spam-campaigns agent",
            ONE_DAY,
            bundled=True,
        ),
        spec(
            "deliver",
            settings.deliver_partitions,
            "none (partition = edge slot)",
            "router (acks, errors), sessions agent",
            "the edge holding that slot",
            ONE_HOUR,
            bundled=True,
        ),
        # Media (docs/media.md): upload requests and completions (edges), verdicts (the media
        # processor) and expiries (the media agent's timer), applied by the media agent; kept
        # forever, like commands, so that the media table can be rebuilt.
        spec(
            "media-commands",
            conv,
            "media_id (bundles: partition = hash of it)",
            "edges (requests, completions, references), media processor, worker timers",
            "media agent",
            KEEP_FOREVER,
            bundled=True,
        ),
        # Each media's latest state: the processor verifies and deletes on it, the sink keeps
        # it in MongoDB, moderation may read it.
        spec(
            "media",
            conv,
            "media_id",
            "media agent",
            "media processor, mongo sink, moderation",
            COMPACTED,
        ),
        # Records a worker could never write (too large, refused for good), with the reason:
        # the partition moved on without them, and an operator looks here.
        spec(
            "deadletter",
            1,
            "the topic the record was meant for",
            "workers",
            "operators (chatctl, alerts)",
            ONE_WEEK,
        ),
    ]


def topic_spec(settings: Settings, short: str) -> TopicSpec:
    return next(spec for spec in topic_specs(settings) if spec.short == short)
