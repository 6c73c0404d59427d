"""One batch of input events for one agent: the rows it reads and changes, and what it emits.

An agent's handler is a pure function of (rows, events) → (rows, outputs). It reads rows through
the batch, which sees the rows staged earlier in the same batch, and stages the rows it changes
and the records it produces; it never touches Kafka, Redis or the clock. The runtime
(``topologies/runtime.py``) then makes the batch durable, in this order:

1. cache writes (Redis hashes and set members that readers must see no later than the events
   announcing them);
2. outputs: public records, ``chat.users`` bundles, ``chat.deliver`` bundles, acknowledged;
3. changed rows, one changelog record per row, acknowledged;
4. replies that promise durability (``message.ack``, ``ok``).

Because handlers are deterministic, a batch replayed after a crash before step 3 produces the
very same outputs again (consumers dedupe by natural keys); after step 3 it finds the new rows
and only repeats the replies.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from chat import records
from chat.settings import Settings
from chat.topics import topic_spec


@dataclass(frozen=True, slots=True)
class Event:
    """One input event: its partitioning key, its value, and its record timestamp (ms)."""

    key: str
    value: dict[str, Any]
    at: int


@dataclass
class Batch:
    settings: Settings
    # table name -> the rows this worker holds (read-only here).
    tables: Mapping[str, Mapping[str, Any]]
    # (table, key) -> the new row; None deletes it.
    rows: dict[tuple[str, str], Any] = field(default_factory=dict)
    # Public topics, one record per event: (topic name without prefix, key, value).
    records: list[tuple[str, str, bytes]] = field(default_factory=list)
    # chat.users entries by partition, chat.deliver entries by edge slot.
    user_events: dict[int, list[bytes]] = field(default_factory=dict)
    deliveries: dict[int, list[bytes]] = field(default_factory=dict)
    replies: dict[int, list[bytes]] = field(default_factory=dict)
    # Redis hashes to set before the outputs are written: (key, fields).
    cache_writes: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    # Other bundled topics (chat.spam-signals): topic -> partition -> entries.
    bundled: dict[str, dict[int, list[bytes]]] = field(default_factory=dict)
    # Redis set members to add (True) or remove (False) before the outputs: (key, member, in).
    set_writes: list[tuple[str, str, bool]] = field(default_factory=list)

    def row(self, table: str, key: str) -> Any:
        staged = (table, key)
        if staged in self.rows:
            return self.rows[staged]
        return self.tables[table].get(key)

    def stage_row(self, table: str, key: str, value: Any) -> None:
        self.rows[(table, key)] = value

    def emit(self, topic: str, key: str, value: Any) -> None:
        """A record on a public topic (``messages``, ``conversations``, ``receipts``, ...)."""
        self.records.append((topic, key, records.dumps(value)))

    def emit_bundled(self, topic: str, key: str, event: dict[str, Any]) -> None:
        """An event on a bundled topic other than ``users``, bundled with the batch's others
        for its partition: one record per partition and batch, not one per event."""
        partition = records.partition_for(key, _partitions(self.settings, topic))
        by_partition = self.bundled.setdefault(topic, {})
        by_partition.setdefault(partition, []).append(records.keyed_event(key, event))

    def to_user(self, user: str, event: dict[str, Any]) -> None:
        """An event for the sessions agent, bundled with the batch's others for its partition."""
        partition = records.partition_for(user, self.settings.user_partitions)
        self.user_events.setdefault(partition, []).append(records.keyed_event(user, event))

    def deliver(self, slot: int, sessions: list[str], frame: dict[str, Any]) -> None:
        """A frame for some sessions held by the edge in ``slot`` (written with the outputs)."""
        self.deliveries.setdefault(slot, []).append(records.frame_delivery(sessions, frame))

    def deliver_sync(self, slot: int, session: str, sync: dict[str, Any]) -> None:
        self.deliveries.setdefault(slot, []).append(records.sync_delivery(session, sync))

    def reply_when_durable(self, slot: int, session: str, frame: dict[str, Any]) -> None:
        """A reply that promises durability (``message.ack``, ``ok``): written after the rows."""
        self.replies.setdefault(slot, []).append(records.frame_delivery([session], frame))

    def cache(self, key: str, fields: dict[str, Any]) -> None:
        self.cache_writes.append((key, fields))

    def cache_member(self, key: str, member: str, present: bool) -> None:
        """Add ``member`` to (or remove it from) the Redis set ``key``, before the outputs."""
        self.set_writes.append((key, member, present))


@functools.lru_cache(maxsize=64)
def _partitions(settings: Settings, topic: str) -> int:
    return topic_spec(settings, topic).partitions
