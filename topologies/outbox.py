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
from collections.abc import Sequence
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
    # False while rebuilding tables (`chatctl replay tables`): only the rows are written.
    outputs: bool = True
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

    async def publish_batch(self, agent: str, events: Sequence[Any]) -> None:
        """:meth:`publish`, timed, and the batch counted, in ``agent``'s metrics."""
        with metrics.batch_publish_seconds.labels(agent).time():
            await self.publish()
        metrics.events_processed.labels(agent).inc(len(events))
        metrics.batch_events.labels(agent).observe(len(events))

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
        # Straight to the aiokafka producer, every send of a step in flight at once, each step
        # awaited on the brokers' acknowledgements. Not through Faust's table writes or
        # ``Topic.send``: Faust hands changelog records to a buffer whose ``flush()`` returns
        # after 0.1 s without progress, before the last records reach the producer, so a batch
        # could be committed with its rows never written (a lost message after a rebalance).
        producer = self.app.producer._ensure_producer()  # type: ignore[attr-defined]
        if not self.outputs:
            self._records.clear()
            self._replies.clear()
        await _send_all(
            producer,
            [
                (topic.get_topic_name(), key, value, partition)
                for topic, key, value, partition in self._records
            ],
        )
        # A row goes to its changelog exactly as Faust's own write would (raw str key, JSON
        # value, None as the tombstone; partition = the default partitioner's hash of the key,
        # which ``use_partitioner=True`` tables recover from), and into the table's store
        # directly, so that Faust does not write it a second time.
        rows = list(self._rows.items())
        written = await _send_all(
            producer,
            [
                (
                    table.changelog_topic.get_topic_name(),
                    row_key.encode(),
                    None if value is None else records.dumps(value),
                    None,
                )
                for (_, row_key), (table, value) in rows
            ],
        )
        for ((_, row_key), (table, value)), metadata in zip(rows, written, strict=True):
            store = table.data
            if value is None:
                store.data.pop(row_key, None)
            else:
                store.data[row_key] = value
            # Which partition the key lives in: Faust's in-memory store drops the keys of
            # partitions this worker no longer owns when a rebalance's recovery completes.
            store._key_partition[row_key] = metadata.partition
        # Replies are not awaited: Kafka keeps them in order behind this batch's deliveries on
        # the same partition, and a lost reply only makes the client retry (idempotently).
        for slot, value in self._replies:
            future = await producer.send(self.deliver_topic.get_topic_name(), value, partition=slot)
            future.add_done_callback(_log_failed_reply)


OutRecord = tuple[str, bytes | None, bytes | None, int | None]  # topic, key, value, partition


async def _send_all(producer: Any, batch: list[OutRecord]) -> list[Any]:
    """Hand every record to the producer, then wait until the brokers acknowledged all of them
    (``acks=all``); returns their ``RecordMetadata``, raises if any one failed."""
    futures = [
        await producer.send(topic, value, key=key, partition=partition)
        for topic, key, value, partition in batch
    ]
    return list(await asyncio.gather(*futures)) if futures else []


def _log_failed_reply(future: asyncio.Future[Any]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.warning("a reply was not delivered: %r", future.exception())
