"""Every stream agent, declared once: its source topic, the tables it owns, what it writes, its
handler and its timers.

The runtime (``topologies/runtime.py``) builds the Faust agents, tables and timers from these;
topic creation (``ops/topics.py``), ``chatctl topology``, the table rebuild (``ops/rebuild.py``)
and docs/topology.md derive from them too. Adding an agent is adding an entry here
(docs/adding-an-agent.md). Nothing here imports Faust.

A table is partitioned like its agent's source topic and keyed by the same key
(co-partitioning): the agent only ever reads rows of the partitions it owns.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from chat.settings import Settings
from chat.topics import CHANGELOG, TopicSpec, changelog_name, topic_specs
from tables import activity as activity_table
from tables import (
    conversations,
    inbox,
    moderation,
    presence_subscribers,
    receipts,
    sequences,
    sessions,
    spam_campaigns,
    spam_senders,
    typing_state,
)
from tables import media as media_table
from topologies import activity, detectors, memberships, router, spam
from topologies import media as media_agent
from topologies import sessions as sessions_agent
from topologies.batch import Batch, Event
from topologies.timers import Timer


@dataclass(frozen=True)
class AgentSpec:
    name: str
    source: str  # topic, without the prefix
    tables: tuple[str, ...]  # owned by this agent, keyed like the source
    outputs: tuple[str, ...]  # topics it writes, without the prefix
    handler: Callable[[Batch, list[Event]], None]
    timers: tuple[Timer, ...] = ()
    # A boolean setting that leaves the agent out of the workers when false (its topics and
    # changelogs are still declared, so turning it back on needs no migration).
    switch: str = ""


AGENTS: tuple[AgentSpec, ...] = (
    AgentSpec(
        name="router",
        source="commands",
        tables=(
            conversations.TABLE,
            sequences.TABLE,
            receipts.TABLE,
            typing_state.TABLE,
            moderation.POLICY,
            moderation.MODERATED,
        ),
        outputs=(
            "messages",
            "conversations",
            "receipts",
            "users",
            "deliver",
            "moderation",
            "commands",
        ),
        handler=router.route,
        timers=(Timer(1.0, router.expire_typing), Timer(5.0, memberships.rebuild_cache)),
    ),
    AgentSpec(
        name="sessions",
        source="users",
        tables=(sessions.TABLE, inbox.TABLE, presence_subscribers.TABLE),
        outputs=("deliver",),
        handler=sessions_agent.route_users,
        timers=(
            Timer(5.0, sessions_agent.expire_dead_edges),
            Timer(5.0, sessions_agent.rebuild_presence_cache),
        ),
    ),
    AgentSpec(
        name="activity",
        source="messages",
        tables=(activity_table.TABLE,),
        outputs=("activity",),
        handler=activity.count_activity,
    ),
    # The detectors behind delivery (docs/moderation.md#classifier, #spam-detection): their
    # decisions go to the router as commands.
    AgentSpec(
        name="detectors",
        source="messages",
        tables=(),
        outputs=("commands", "spam-signals"),
        handler=detectors.judge,
        switch="moderation_agents",
    ),
    AgentSpec(
        name="spam-senders",
        source="spam-signals",
        tables=(spam_senders.TABLE,),
        outputs=("spam-spreads", "commands"),
        handler=spam.track_senders,
        timers=(Timer(30.0, spam.expire_quiet_senders),),
        switch="moderation_agents",
    ),
    AgentSpec(
        name="spam-campaigns",
        source="spam-spreads",
        tables=(spam_campaigns.TABLE,),
        outputs=("commands",),
        handler=spam.find_campaigns,
        timers=(Timer(30.0, spam.expire_quiet_campaigns),),
        switch="moderation_agents",
    ),
    AgentSpec(
        name="media",
        source="media-commands",
        tables=(media_table.TABLE,),
        outputs=("media",),
        handler=media_agent.apply_commands,
        # A scan of every media row: expiry has minutes of slack, so not every second.
        timers=(Timer(5.0, media_agent.expire_media),),
    ),
)


def running_agents(settings: Settings) -> tuple[AgentSpec, ...]:
    """The agents this deployment's workers run: those whose switch is not turned off."""
    return tuple(agent for agent in AGENTS if not agent.switch or getattr(settings, agent.switch))


def tables(settings: Settings) -> dict[str, TopicSpec]:
    """Every table, with the source topic it is partitioned and keyed like."""
    sources = {spec.short: spec for spec in topic_specs(settings)}
    return {table: sources[agent.source] for agent in AGENTS for table in agent.tables}


def changelog_specs(settings: Settings) -> list[TopicSpec]:
    """The changelog topics of the worker tables, created with the other topics."""
    return [
        TopicSpec(
            short=f"{table}-changelog",
            name=changelog_name(settings, table),
            partitions=source.partitions,
            key=source.key.split(" ")[0],
            writers="worker (table writes)",
            readers="worker (recovery, standbys)",
            config=dict(CHANGELOG),
        )
        for table, source in tables(settings).items()
    ]


def input_topics() -> list[str]:
    """The topics the agents read: what a table rebuild replays."""
    return sorted({agent.source for agent in AGENTS})
