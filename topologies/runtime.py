"""The agent runtime: the Faust application, its topics and tables, and one batch runner that
every agent in ``topologies/topology.py`` runs on. The only module that touches Faust's API or
its internals (with ``faust_fixes.py``): a Faust upgrade touches these two files.

For each batch of input records the runner

1. expands bundles into events (``[[key, event], ...]``; a public topic's record is one event),
2. calls the agent's pure handler with a fresh :class:`~topologies.batch.Batch`,
3. makes the batch durable: cache writes, then the outputs (public records, one ``chat.users``
   bundle per partition, one ``chat.deliver`` bundle per edge slot), then one changelog record
   per changed row, then the replies — each step awaited on the brokers' acknowledgements
   (``acks=all``) before the next, and only then lets Faust commit the input offsets.

A record the broker can never accept (too large, or refused for good) goes to the dead-letter
topic with the reason, and the batch moves on: a permanent error is never retried. Anything
else is retried until it succeeds (every step is idempotent).

Started with ``python -m topologies`` (see ``__main__.py``). In rebuild mode
(``CHAT_WORKER_REBUILD``, used by ``chatctl replay tables``) only the rows are written.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any

import faust
from aiokafka.errors import (
    InvalidTopicError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
)

from chat import records
from chat.kafka_security import faust_broker_credentials
from chat.logs import json_logging_config
from chat.redis_pool import connect_redis
from chat.settings import Settings, load_settings
from chat.topics import TopicSpec, changelog_name, topic_specs
from topologies import faust_fixes, metrics
from topologies.batch import Batch, Event
from topologies.cache import CacheWriter
from topologies.timers import Timer
from topologies.topology import AgentSpec, running_agents
from topologies.topology import tables as table_sources

log = logging.getLogger("chat.runtime")

faust_fixes.apply()
settings: Settings = load_settings()

app = faust.App(
    settings.worker_app_id,
    broker=f"kafka://{settings.kafka_bootstrap}",
    # SASL and/or TLS from CHAT_KAFKA_SECURITY_PROTOCOL & co.; None (plaintext) by default.
    broker_credentials=faust_broker_credentials(settings),
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
redis_client = connect_redis(settings)
cache = CacheWriter(redis_client)

TOPICS: dict[str, TopicSpec] = {spec.short: spec for spec in topic_specs(settings)}
# Input records (bundles) per batch, at most: bounds the memory and the time one batch holds.
MAX_BATCH_RECORDS = 1000

# Errors a retry cannot fix: the record goes to the dead-letter topic instead.
PERMANENT_ERRORS = (
    MessageSizeTooLargeError,
    RecordTooLargeError,
    RecordListTooLargeError,
    InvalidTopicError,
)


def _source_topic(spec: TopicSpec) -> faust.TopicT:
    # Keys and values stay bytes: the runner decodes them itself (orjson), and the key bytes
    # are exactly what the producers hashed to pick the partition.
    return app.topic(
        spec.name,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=spec.partitions,
    )


def _table(name: str, partitions: int) -> Any:
    """A table whose changelog is keyed by the raw key bytes, like its source topic.

    Faust would serialize a ``str`` key to JSON (``"bob"`` with the quotes) for the changelog,
    and its partitioner would then hash other bytes than the producers hashed for the source
    topic: changelog partition p would not hold the rows of source partition p, and a worker
    taking over a partition would recover the wrong rows. The runner writes the changelog
    records itself (see ``_publish_once``); this topic is how Faust reads them back.
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


TABLE_PARTITIONS: dict[str, int] = {
    name: source.partitions for name, source in table_sources(settings).items()
}
TABLES: dict[str, Any] = {name: _table(name, n) for name, n in TABLE_PARTITIONS.items()}


# --------------------------------------------------------------------------- the batch runner


def events_of(source: TopicSpec, batch: Iterable[Any]) -> list[Event]:
    """The events in a batch of Faust events: a bundle holds many, a public record one.

    A keyed JSON object on a bundled topic is one event too: that is how those topics were
    written before bundles, so the history of an existing deployment still replays."""
    out: list[Event] = []
    for record in batch:
        at = round(record.message.timestamp * 1000)
        try:
            value = records.loads(record.value)
            if source.bundled and isinstance(value, list):
                out.extend(Event(key, event, at) for key, event in value)
            else:
                out.append(Event(record.key.decode(), value, at))
        except Exception:
            # Undecodable input must not stop the partition; it can never decode later either.
            log.exception(
                "undecodable input record skipped",
                extra={"topic": source.name, "offset": record.message.offset},
            )
            metrics.undecodable_records.labels(source.short).inc()
    return out


async def take_batches(stream: Any, max_events: int) -> AsyncIterator[list[Any]]:
    """Batches of input records, as soon as there are any: no timer.

    Faust's ``take_events`` waits for a fixed window after every batch (latency at light load,
    and a wake-up every window when idle) and stops taking records while a batch is being
    published. Here the stream keeps taking records while the previous batch is published, and
    those make the next batch the moment it is done: under load batches grow by themselves; a
    lone record waits for nothing. A batch's records are acked (so Faust may commit their
    offsets) only after the caller has published it, when it asks for the next one.
    """
    records: list[Any] = []
    ready = asyncio.Event()
    room = asyncio.Event()
    room.set()

    async def add_to_batch(value: Any) -> Any:
        while len(records) >= max_events:
            room.clear()
            await stream.wait(room)
        event = stream.current_event
        if event is None:
            raise RuntimeError("a stream processor ran without a current event")
        records.append(event)
        ready.set()
        return value

    enable_acks = stream.enable_acks
    stream.enable_acks = False  # acked below, after the batch is durable
    stream.add_processor(add_to_batch)
    stream._enable_passive(stream.channel)
    try:
        while not stream.should_stop:
            await stream.wait_for_stopped(ready)
            # One turn of the loop for records already fetched to join this batch.
            await asyncio.sleep(0)
            batch = records[:]
            records.clear()
            ready.clear()
            room.set()
            if not batch:
                continue
            try:
                yield batch
            finally:
                for event in batch:
                    await stream.ack(event)
    finally:
        stream.enable_acks = enable_acks
        stream._processors.remove(add_to_batch)


def register(agent: AgentSpec) -> None:
    source = TOPICS[agent.source]
    views = {name: TABLES[name] for name in agent.tables}
    if "compact" not in source.config.get("cleanup.policy", ""):
        faust_fixes.no_gap_acks_on({source.name})

    async def run(stream: Any) -> None:
        async for batch_events in take_batches(stream, MAX_BATCH_RECORDS):
            metrics.observe_batch_age(agent.name, batch_events)
            events = events_of(source, batch_events)
            batch = Batch(settings, views)
            agent.handler(batch, events)
            with metrics.batch_publish_seconds.labels(agent.name).time():
                await publish(batch)
            metrics.observe_lag(agent.name, batch_events)
            metrics.events_processed.labels(agent.name).inc(len(events))
            metrics.batch_events.labels(agent.name).observe(len(events))
            metrics.batch_records.labels(agent.name).observe(len(batch_events))

    run.__name__ = run.__qualname__ = agent.name
    # Concurrency 1: ordering needs it, and a Faust defect can commit past an in-flight event
    # when it is higher.
    app.agent(_source_topic(source), name=f"topologies.{agent.name}", concurrency=1)(run)
    for timer in agent.timers:
        register_timer(agent, timer)


async def publish(batch: Batch) -> None:
    """Make the batch durable, even if the agent is cancelled meanwhile.

    A graceful stop or a rebalance cancels the agent, and Faust's ``take_events`` acks the
    batch as the generator closes: its offsets could be committed while the rows are still
    unwritten, and the next owner would hand out the same seq again. So the work runs shielded,
    and a cancellation first waits for it to finish.
    """
    task = asyncio.ensure_future(_publish_until_done(batch))
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        await task
        raise


async def _publish_until_done(batch: Batch) -> None:
    """Retry until the batch is durable. It must not give up: Faust acks a ``take_events``
    batch when the generator is closed, so an exception escaping here would commit offsets
    whose outputs were never written. Every step is idempotent (same records, same rows)."""
    delay = 0.05
    while True:
        try:
            await _publish_once(batch)
            return
        except Exception as exc:
            log.warning("publishing a batch failed, retrying: %r", exc)
            metrics.publish_retries.inc()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)


OutRecord = tuple[str, bytes | None, bytes | None, int | None]  # topic, key, value, partition


def _bundles(topic: str, by_partition: dict[int, list[bytes]]) -> list[OutRecord]:
    name = TOPICS[topic].name
    return [
        (name, None, value, partition)
        for partition, entries in by_partition.items()
        for value in records.split_bundles(entries, settings.bundle_max_bytes)
    ]


def output_records(batch: Batch) -> list[OutRecord]:
    # Keyed records get their partition here, from the cached partitioner, not from aiokafka's
    # (the same murmur2, uncached).
    out: list[OutRecord] = [
        (
            TOPICS[topic].name,
            key.encode(),
            value,
            records.partition_for(key, TOPICS[topic].partitions),
        )
        for topic, key, value in batch.records
    ]
    for topic, by_partition in batch.bundled.items():
        out += _bundles(topic, by_partition)
    return out + _bundles("users", batch.user_events) + _bundles("deliver", batch.deliveries)


async def _publish_once(batch: Batch) -> None:
    # Straight to the aiokafka producer, every send of a step in flight at once, each step
    # awaited on the brokers' acknowledgements. Not through Faust's table writes or
    # ``Topic.send``: Faust hands changelog records to a buffer whose ``flush()`` returns after
    # 0.1 s without progress, before the last records reach the producer, so a batch could be
    # committed with its rows never written (a lost message after a rebalance).
    producer = app.producer._ensure_producer()  # type: ignore[attr-defined]
    if settings.worker_rebuild:
        outputs: list[OutRecord] = []
    else:
        await cache.write(batch.cache_writes, batch.set_writes)
        outputs = output_records(batch)
    await _send_all(producer, outputs)
    # A row goes to its changelog as Faust's own write would (raw str key, JSON value, None as
    # the tombstone; partition = the default partitioner's hash of the key, which
    # ``use_partitioner=True`` tables recover from), and into the table's store directly, so
    # that Faust does not write it a second time.
    rows = list(batch.rows.items())
    written = await _send_all(
        producer,
        [
            (
                changelog_name(settings, table),
                key.encode(),
                None if value is None else records.dumps(value),
                records.partition_for(key, TABLE_PARTITIONS[table]),
            )
            for (table, key), value in rows
        ],
    )
    for ((table, key), value), metadata in zip(rows, written, strict=True):
        if metadata is None:
            continue  # dead-lettered: the store keeps what the changelog holds
        store = TABLES[table].data
        if value is None:
            store.data.pop(key, None)
        else:
            store.data[key] = value
        # Which partition the key lives in: Faust's in-memory store drops the keys of
        # partitions this worker no longer owns when a rebalance's recovery completes.
        store._key_partition[key] = metadata.partition
    if settings.worker_rebuild:
        return
    # Replies are not awaited: Kafka keeps them in order behind this batch's deliveries on the
    # same partition, and a lost reply only makes the client retry (idempotently).
    for name, _, value, slot in _bundles("deliver", batch.replies):
        future = await producer.send(name, value, partition=slot)
        future.add_done_callback(_log_failed_reply)


async def _send_all(producer: Any, out: Sequence[OutRecord]) -> list[Any]:
    """Hand every record to the producer, then wait until the brokers acknowledged all of them
    (``acks=all``). Returns each record's ``RecordMetadata``, or None for a record that went to
    the dead-letter topic; raises if any other error happened (the caller retries)."""
    futures: list[asyncio.Future[Any] | None] = []
    refused: list[tuple[OutRecord, BaseException]] = []
    for record in out:
        topic, key, value, partition = record
        try:
            futures.append(await producer.send(topic, value, key=key, partition=partition))
        except PERMANENT_ERRORS as too_large:  # e.g. above the producer's max_request_size
            futures.append(None)
            refused.append((record, too_large))
    results: list[Any] = []
    for record, future in zip(out, futures, strict=True):
        if future is None:
            results.append(None)
            continue
        try:
            results.append(await future)
        except PERMANENT_ERRORS as exc:
            results.append(None)
            refused.append((record, exc))
    for record, reason in refused:
        await dead_letter(producer, record, reason)
    return results


async def dead_letter(producer: Any, record: OutRecord, reason: BaseException) -> None:
    topic, key, value, partition = record
    log.error(
        "record refused for good, sent to the dead-letter topic",
        extra={"topic": topic, "bytes": len(value or b""), "reason": repr(reason)},
    )
    metrics.dead_letters.labels(topic).inc()
    entry = {
        "topic": topic,
        "partition": partition,
        "key": (key or b"").decode(errors="replace"),
        "bytes": len(value or b""),
        "reason": repr(reason),
        "value_head": (value or b"")[:4096].decode(errors="replace"),
    }
    await (await producer.send(TOPICS["deadletter"].name, records.dumps(entry), key=topic.encode()))


def _log_failed_reply(future: asyncio.Future[Any]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.warning("a reply was not delivered: %r", future.exception())


# --------------------------------------------------------------------------- timers


class FaustWorker:
    """What timers may use (see ``topologies/timers.py``)."""

    settings = settings
    redis = redis_client

    def rows(self, table: str) -> list[tuple[str, Any]]:
        return list(TABLES[table].items())

    async def send(self, topic: str, key: str, event: dict[str, Any]) -> None:
        spec = TOPICS[topic]
        producer = app.producer._ensure_producer()  # type: ignore[attr-defined]
        await producer.send_and_wait(
            spec.name,
            records.bundle([records.keyed_event(key, event)]),
            partition=records.partition_for(key, spec.partitions),
        )

    async def set_cache(self, writes: list[tuple[str, dict[str, Any]]]) -> None:
        await cache.write(writes)

    async def add_to_sets(self, writes: list[tuple[str, str]]) -> None:
        await cache.write([], [(key, member, True) for key, member in writes])

    async def flush_cache(self) -> None:
        await cache.flush()


WORKER = FaustWorker()


def register_timer(agent: AgentSpec, timer: Timer) -> None:
    async def tick() -> None:
        if settings.worker_rebuild:
            return
        try:
            await timer.run(WORKER, int(time.time() * 1000))
        except Exception:
            # Faust stops the whole worker when a timer raises: a bug in one timer (or one row
            # it cannot read) must not take every agent's partitions down with it.
            log.exception("timer failed", extra={"agent": agent.name, "timer": tick.__name__})
            metrics.timer_failures.labels(agent.name).inc()

    tick.__name__ = tick.__qualname__ = f"{agent.name}_{timer.run.__name__}"
    app.timer(interval=timer.interval_s)(tick)


for _agent in running_agents(settings):
    register(_agent)
