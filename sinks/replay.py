"""Rebuild the MongoDB read side from the topics: ``chatctl replay store``.

Reads ``chat.messages``, ``chat.conversations`` and ``chat.receipts`` from the beginning up to
the end offsets seen when it starts (with its own consumer, no group: the live sink is not
disturbed) and writes them with the sink's own upserts into the target database.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from chat.kafka_security import aiokafka_kwargs
from chat.settings import Settings
from chat.topics import topic_specs
from sinks.mongo_sink import MongoSink

Progress = Callable[[int, int], None]


async def replay_store(
    settings: Settings, db_name: str, drop: bool, progress: Progress | None = None
) -> int:
    sink = MongoSink(settings, db_name)
    consumer = AIOKafkaConsumer(
        **aiokafka_kwargs(settings),
        group_id=None,
        enable_auto_commit=False,
        max_poll_records=settings.sink_batch,
    )
    await consumer.start()
    try:
        if drop:
            await sink.mongo.drop_database(db_name)
        await sink.ensure_indexes()
        counts = {spec.name: spec.partitions for spec in topic_specs(settings)}
        partitions = [TopicPartition(t, p) for t in sink.handlers for p in range(counts[t])]
        if not partitions:
            raise RuntimeError("the chat topics do not exist; nothing to replay")
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        total = sum(ends.values())
        done = 0
        remaining = {tp for tp in partitions if ends[tp] > 0}
        while remaining:
            batches = await consumer.getmany(*remaining, timeout_ms=1000)
            recs: list[ConsumerRecord[Any, Any]] = []
            for tp, batch in batches.items():
                recs.extend(r for r in batch if r.offset < ends[tp])
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
            if recs:
                await sink.write_until_saved(recs)
                done += len(recs)
                if progress:
                    progress(done, total)
        return done
    finally:
        await consumer.stop()
        await sink.mongo.close()
