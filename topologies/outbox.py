"""A unit of work for one batch of input events: staged table rows, output records and replies.

Agents never write a table or produce a record directly. They read rows through the outbox
(which sees the rows staged earlier in the same batch) and stage what they change; then
:meth:`Outbox.publish` makes it durable in an order that keeps a crash anywhere harmless:

1. output records (sequenced messages, fan-out, deliveries) are produced and flushed;
2. only then the changed table rows are written to their changelogs and flushed;
3. only then replies that promise durability (``message.ack``, ``ok``) are produced.

A worker that dies before 2 replays the batch against the old rows and produces the very same
records again (consumers dedupe by natural keys); one that dies after 2 finds the new rows and
repeats the replies. The batch's input offsets are committed only after ``publish`` returns
(``Stream.take_events`` acks the events when the next batch is requested).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

import faust

from chat import records
from topologies import metrics

log = logging.getLogger("chat.outbox")


@dataclass
class Outbox:
    app: faust.App
    deliver_topic: faust.TopicT
    _rows: dict[tuple[int, str], tuple[Any, Any]] = field(default_factory=dict)
    _records: list[tuple[faust.TopicT, bytes | None, bytes, int | None]] = field(
        default_factory=list
    )
    _replies: list[tuple[int, bytes]] = field(default_factory=list)

    def row(self, table: Any, key: str) -> Any:
        staged = self._rows.get((id(table), key))
        if staged is not None:
            return staged[1]
        return table.get(key)

    def stage_row(self, table: Any, key: str, value: Any) -> None:
        self._rows[(id(table), key)] = (table, value)

    def produce(
        self, topic: faust.TopicT, key: str | None, value: Any, partition: int | None = None
    ) -> None:
        raw_key = key.encode() if key is not None else None
        self._records.append((topic, raw_key, records.dumps(value), partition))

    def deliver(self, slot: int, sessions: list[str], frame: dict[str, Any]) -> None:
        """A frame for some sessions held by the edge in ``slot``; produced in step 1."""
        self._records.append((self.deliver_topic, None, records.delivery(sessions, frame), slot))

    def deliver_raw(self, slot: int, value: dict[str, Any]) -> None:
        self._records.append((self.deliver_topic, None, records.dumps(value), slot))

    def reply_when_durable(self, slot: int, session: str, frame: dict[str, Any]) -> None:
        """A reply that promises durability (``message.ack``, ``ok``); produced in step 3."""
        self._replies.append((slot, records.delivery([session], frame)))

    async def publish(self) -> None:
        """Make the batch durable, even if the agent is cancelled meanwhile.

        A graceful stop or a rebalance cancels the agent, and Faust's ``take_events`` acks the
        batch as the generator closes: its offsets could be committed while the rows are still
        unwritten, and the next owner would hand out the same seq again. So the work runs
        shielded, and a cancellation first waits for it to finish.
        """
        task = asyncio.ensure_future(self._publish_until_done())
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            await task
            raise

    async def _publish_until_done(self) -> None:
        """Retry until the batch is durable (see :meth:`_publish_once`).

        It must not give up: Faust acks a ``take_events`` batch when the generator is closed, so
        an exception escaping here would commit offsets whose outputs were never written. Every
        step is idempotent (same records, same rows), so repeating the whole batch is safe.
        """
        delay = 0.05
        while True:
            try:
                await self._publish_once()
                break
            except Exception as exc:
                log.warning("publishing a batch failed, retrying: %r", exc)
                metrics.publish_retries.inc()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
        self._rows.clear()
        self._records.clear()
        self._replies.clear()

    async def _publish_once(self) -> None:
        producer = self.app.producer
        for topic, key, value, partition in self._records:
            await topic.send(key=key, value=value, partition=partition)
        if self._records:
            await producer.flush()
        for table, _ in self._rows.values():
            await ensure_metadata(self.app, table.changelog_topic.get_topic_name())
        for (_, row_key), (table, value) in self._rows.items():
            if value is None:
                if row_key in table:
                    del table[row_key]
            else:
                table[row_key] = value
        if self._rows:
            await producer.flush()
        for slot, value in self._replies:
            await self.deliver_topic.send(value=value, partition=slot)


_metadata_ready: set[str] = set()


async def ensure_metadata(app: faust.App, topic: str) -> None:
    """Table writes pick the changelog partition from the producer's cached metadata without
    waiting for it; on a fresh cluster the changelog topic may not be cached yet."""
    if topic in _metadata_ready:
        return
    producer = app.producer._ensure_producer()  # type: ignore[attr-defined]
    await producer.client._wait_on_metadata(topic)
    _metadata_ready.add(topic)
