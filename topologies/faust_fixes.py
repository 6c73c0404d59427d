"""Work-arounds for faust-streaming defects this project hits, applied once at import.

Keep each one small, explained, and removable when the upstream fix ships.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from typing import Any

from faust.stores.memory import Store as MemoryStore
from faust.tables.recovery import Recovery
from faust.transport.consumer import Consumer
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.types import TP

log = logging.getLogger("chat.runtime")

_original_seek_offsets = Recovery._seek_offsets
_original_add_gap = Consumer._add_gap
_original_new_offset = Consumer._new_offset
# Source topics where an offset missing from a fetch can only be a record Faust dropped (no
# compaction, no transactions): see ``_no_gap_acks``.
_GAPLESS_TOPICS: set[str] = set()
# The last offset committed per input partition: Faust forgets it when a rebalance revokes the
# partition, before it commits the batches still in flight (``_commit_without_holes``).
_COMMITTED: dict[TP, int] = {}
# When each partition was last sent back to a record never processed, and to which offset.
_REWOUND: dict[TP, tuple[int | None, float, int]] = {}
_PENDING: set[asyncio.Future[Any]] = set()


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
    for tp, offset in committed.items():
        if offset:
            _COMMITTED[tp] = offset
        else:
            _COMMITTED.pop(tp, None)
    return committed


async def _no_gap_acks(self: Consumer, tp: TP, offset_from: int, offset_to: int) -> None:
    """Faust counts offsets missing between two fetched records as processed (a "gap", meant
    for compacted topics and transaction markers). On an input topic that is not compacted a
    missing offset is a record Faust fetched and dropped (around a rebalance's seek: see
    ``_commit_without_holes``): it is not counted, so the commit stops before it and
    ``_commit_without_holes`` fetches it again."""
    if tp.topic in _GAPLESS_TOPICS:
        log.warning(
            "records missing from a fetch are not counted as processed",
            extra={"topic": tp.topic, "partition": tp.partition, "from": offset_from},
        )
        return
    await _original_add_gap(self, tp, offset_from, offset_to)


def _commit_without_holes(self: Consumer, tp: TP) -> int | None:
    """The offset to commit: the end of the run of processed records that starts at the
    committed offset. After a rebalance Faust resumes the input partitions before it seeks them
    to the committed offsets, and a record fetched around that seek can be dropped before any
    agent sees it. Faust lets the run it commits start one record after the committed offset
    (its "offset - 1" mismatch), and after a rebalance it forgets the committed offset before
    committing the batches in flight, so such a record was committed with those after it: a
    ``session.open`` in a partition's middle was lost in 1 of 5 runs of a worker joining and
    leaving twice, and a fault-suite run lost a ``session.close`` the same way (the user stayed
    online). Here the commit waits for such a record, and the partition is sent back to it so
    that it is fetched and processed (the records after it are processed again; every step is
    idempotent)."""
    if tp.topic not in _GAPLESS_TOPICS:
        return _original_new_offset(self, tp)
    known = self._committed_offset.get(tp)
    committed = _COMMITTED.get(tp) if known is None else known
    acked = self._acked.get(tp)
    if committed is not None and acked and min(acked) > committed:
        if known is None:
            return None  # a rebalance is on: it seeks the partition to the committed offset
        if _rewind(self, tp, committed):
            return None
    offset: int | None = _original_new_offset(self, tp)
    if offset is not None:
        _COMMITTED[tp] = offset
    return offset


def _rewind(consumer: Consumer, tp: TP, offset: int) -> bool:
    """Send ``tp`` back to ``offset``, at most every 5 s; False once that failed three times
    (the record is gone: retention deleted it while no worker ran)."""
    now = time.monotonic()
    last_offset, last_at, tries = _REWOUND.get(tp, (None, 0.0, 0))
    if last_offset != offset:
        tries = 0
    elif now - last_at < 5.0:
        return True
    if tries >= 3:
        log.error(
            "a record could not be fetched again: committing past it",
            extra={"topic": tp.topic, "partition": tp.partition, "offset": offset},
        )
        return False
    if tp not in consumer.assignment():
        return True
    _REWOUND[tp] = (offset, now, tries + 1)
    log.warning(
        "a record was never processed: fetching its partition again from it",
        extra={"topic": tp.topic, "partition": tp.partition, "offset": offset},
    )
    task = asyncio.ensure_future(consumer.seek(tp, offset))
    _PENDING.add(task)
    task.add_done_callback(_seek_done)
    return True


def _seek_done(task: asyncio.Future[Any]) -> None:
    _PENDING.discard(task)
    if not task.cancelled() and task.exception() is not None:
        log.warning("seeking a partition back failed: %r", task.exception())


def no_gap_acks_on(topics: set[str]) -> None:
    """The input topics on which a missing offset means a dropped record (not compacted)."""
    _GAPLESS_TOPICS.update(topics)


def apply() -> None:
    # The patches and the outbox rely on these internals: fail at start, loudly, if an upgrade
    # of faust-streaming moved them (pyproject.toml bounds the version for the same reason).
    for owner, name in (
        (Recovery, "_seek_offsets"),
        (AIOKafkaConsumerThread, "seek_to_committed"),
        (MemoryStore, "apply_changelog_batch"),
        (Consumer, "_add_gap"),
        (Consumer, "_new_offset"),
    ):
        if not hasattr(owner, name):
            raise RuntimeError(f"faust-streaming changed: {owner.__name__}.{name} is gone")
    Recovery._seek_offsets = _seek_offsets_clamped  # type: ignore[method-assign]
    AIOKafkaConsumerThread.seek_to_committed = _seek_to_committed_or_beginning  # type: ignore[method-assign]
    Consumer._add_gap = _no_gap_acks  # type: ignore[method-assign]
    Consumer._new_offset = _commit_without_holes  # type: ignore[method-assign]
