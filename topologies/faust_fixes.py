"""Work-arounds for faust-streaming defects this project hits, applied once at import.

Keep each one small, explained, and removable when the upstream fix ships.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from faust.stores.memory import Store as MemoryStore
from faust.tables.recovery import Recovery
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.types import TP

_original_seek_offsets = Recovery._seek_offsets


async def _seek_offsets_clamped(
    self: Recovery, consumer: Any, tps: set[TP], offsets: Counter[TP], title: str
) -> None:
    """Faust computes recovery start offsets as ``earliest - 1`` and only maps -1 to 0; after a
    broker restart it can come up with None (no earliest offset known yet) or -2, and the whole
    worker crashes with "Offset must be a positive integer" (faust-streaming issue #176 has the
    same root). Reading a changelog from offset 0 is always correct, only slower."""
    clamped: Counter[TP] = Counter({tp: max(offsets[tp] or 0, 0) for tp in tps})
    await _original_seek_offsets(self, consumer, tps, clamped, title)


async def _seek_to_committed_or_beginning(self: AIOKafkaConsumerThread) -> Any:
    """Faust drops the records it fetched while a rebalance or a recovery had the flow stopped,
    and then "seeks back to committed offsets"; aiokafka seeks only partitions whose committed
    offset is above 0, so a partition the group never committed keeps the position past the
    dropped records, and they are never processed. That is what a new agent meets on its first
    start in an existing group (the activity agent skipped the history of chat.messages). Such a
    partition is sent back to its beginning, as ``consumer_auto_offset_reset="earliest"`` means.
    Changelog partitions are left alone: the table recovery positions those itself."""
    consumer = self._ensure_consumer()
    committed = await self.call_thread(consumer.seek_to_committed)
    never_committed = [
        tp for tp, offset in committed.items() if not offset and not tp.topic.endswith("-changelog")
    ]
    if never_committed:
        await self.call_thread(consumer.seek_to_beginning, *never_committed)
    return committed


def apply() -> None:
    # The patches and the outbox rely on these internals: fail at start, loudly, if an upgrade
    # of faust-streaming moved them (pyproject.toml bounds the version for the same reason).
    for owner, name in (
        (Recovery, "_seek_offsets"),
        (AIOKafkaConsumerThread, "seek_to_committed"),
        (MemoryStore, "apply_changelog_batch"),
    ):
        if not hasattr(owner, name):
            raise RuntimeError(f"faust-streaming changed: {owner.__name__}.{name} is gone")
    Recovery._seek_offsets = _seek_offsets_clamped  # type: ignore[method-assign]
    AIOKafkaConsumerThread.seek_to_committed = _seek_to_committed_or_beginning  # type: ignore[method-assign]
