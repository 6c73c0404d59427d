"""The edge's only link to the stream topology: a producer for commands and user events, and a
consumer of its own ``chat.deliver`` partition (the edge slot).

Both directions carry bundles (chat/records.py). Commands and user events are gathered per
destination partition: the first event of an idle partition is sent on the next turn of the
event loop with whatever else arrived in that turn, and while a bundle is in flight the next
events wait and go out together when it is acknowledged. A lone event is not delayed; under
load bundles grow by themselves, and the stream agents pay their per-record cost per bundle.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from chat import records
from chat.kafka_security import aiokafka_kwargs
from chat.settings import Settings
from chat.topics import TopicSpec, topic_spec
from edge import metrics

log = logging.getLogger("chat.edge.kafka")
PRODUCE_TIMEOUT_S = 5.0


class KafkaUnavailable(Exception):
    """A record could not be written to Kafka in time; the client gets ``unavailable``."""


class _Lane:
    """The events waiting for one partition, and whether a bundle of it is in flight."""

    __slots__ = ("entries", "flushing", "waiters")

    def __init__(self) -> None:
        self.entries: list[bytes] = []
        self.waiters: list[asyncio.Future[None]] = []
        self.flushing = False


class KafkaIO:
    def __init__(self, settings: Settings, on_delivery: Callable[[records.Delivery], None]) -> None:
        self.settings = settings
        self.on_delivery = on_delivery
        self.commands_topic = topic_spec(settings, "commands")
        self.users_topic = topic_spec(settings, "users")
        self.media_topic = topic_spec(settings, "media-commands")
        self.deliver_topic = settings.topic("deliver")
        self._lanes: dict[tuple[str, int], _Lane] = {}
        self._flushes: set[asyncio.Task[None]] = set()
        self.producer = self._new_producer()
        self._producer_lock = asyncio.Lock()
        self.consumer: AIOKafkaConsumer | None = None
        self._consume_task: asyncio.Task[None] | None = None
        self.last_consume_ok = False

    def _new_producer(self) -> AIOKafkaProducer:
        # Not the idempotent producer: after a broker restart aiokafka's idempotent producer
        # can wedge for good on OutOfOrderSequenceNumber. Duplicates from retries are harmless
        # here: the router dedupes sends by client_msg_id and every other command is idempotent.
        return AIOKafkaProducer(
            **aiokafka_kwargs(self.settings),
            acks="all",
            linger_ms=0,
            request_timeout_ms=int(PRODUCE_TIMEOUT_S * 1000),
            client_id="chat-edge",
        )

    async def _replace_producer(self, broken: AIOKafkaProducer) -> None:
        """A producer that failed with a non-retriable error is replaced by a fresh one."""
        async with self._producer_lock:
            if self.producer is not broken:
                return  # another request already replaced it
            log.warning("replacing the Kafka producer after a fatal error")
            self.producer = self._new_producer()
            await asyncio.gather(broken.stop(), return_exceptions=True)
            try:
                await self.producer.start()
            except KafkaError as exc:
                log.warning("new producer cannot connect yet: %s", exc)

    async def start(self, slot: int) -> None:
        await self.producer.start()
        self.consumer = AIOKafkaConsumer(
            **aiokafka_kwargs(self.settings),
            enable_auto_commit=False,
            group_id=None,
            fetch_max_wait_ms=50,
            client_id=f"chat-edge-slot-{slot}",
        )
        await self.consumer.start()
        partition = TopicPartition(self.deliver_topic, slot)
        self.consumer.assign([partition])
        # Deliveries older than this process are for sessions it never held: start at the end,
        # and resolve the position now so that nothing produced after start() is skipped.
        await self.consumer.seek_to_end(partition)
        await self.consumer.position(partition)
        self._consume_task = asyncio.create_task(self._consume(), name="deliver-consumer")

    async def stop(self) -> None:
        if self._consume_task:
            self._consume_task.cancel()
            await asyncio.gather(self._consume_task, return_exceptions=True)
        if self.consumer:
            await self.consumer.stop()
        await self.producer.stop()

    async def _consume(self) -> None:
        assert self.consumer is not None
        while True:
            try:
                batches = await self.consumer.getmany(timeout_ms=1000, max_records=2000)
                self.last_consume_ok = True
            except KafkaError as exc:
                self.last_consume_ok = False
                log.warning("deliver consumer error: %s", exc)
                await asyncio.sleep(0.5)
                continue
            for batch in batches.values():
                for record in batch:
                    try:
                        entries = records.decode_bundle(record.value)
                    except Exception:
                        log.exception("bad delivery record", extra={"offset": record.offset})
                        continue
                    for entry in entries:
                        try:
                            self.on_delivery(records.decode_delivery(entry))
                        except Exception:
                            log.exception("bad delivery", extra={"offset": record.offset})

    async def _send(self, topic: TopicSpec, key: str, value: Mapping[str, Any]) -> None:
        """Queue the event in its partition's lane; returns once its bundle is acknowledged."""
        started = time.monotonic()
        partition = records.partition_for(key, topic.partitions)
        lane = self._lanes.get((topic.name, partition))
        if lane is None:
            lane = self._lanes[(topic.name, partition)] = _Lane()
        acknowledged = asyncio.get_running_loop().create_future()
        lane.entries.append(records.keyed_event(key, value))
        lane.waiters.append(acknowledged)
        if not lane.flushing:
            lane.flushing = True
            task = asyncio.create_task(self._flush(topic.name, partition, lane))
            self._flushes.add(task)
            task.add_done_callback(self._flushes.discard)
        await acknowledged
        metrics.produce_seconds.observe(time.monotonic() - started)

    async def _flush(self, topic: str, partition: int, lane: _Lane) -> None:
        """Send the lane's events as bundles, one in flight at a time, until it is empty."""
        try:
            while lane.entries:
                entries, waiters = lane.entries, lane.waiters
                lane.entries, lane.waiters = [], []
                producer = self.producer
                error: KafkaUnavailable | None = None
                try:
                    for value in records.split_bundles(entries, self.settings.bundle_max_bytes):
                        await asyncio.wait_for(
                            producer.send_and_wait(topic, value, partition=partition),
                            PRODUCE_TIMEOUT_S,
                        )
                except TimeoutError:
                    error = KafkaUnavailable("Kafka did not acknowledge in time")
                except Exception as exc:  # KafkaError, or a producer that never (re)started
                    if not getattr(exc, "retriable", False):
                        await self._replace_producer(producer)
                    error = KafkaUnavailable(str(exc) or type(exc).__name__)
                for waiter in waiters:
                    if waiter.done():
                        continue
                    if error is None:
                        waiter.set_result(None)
                    else:
                        waiter.set_exception(error)
        finally:
            lane.flushing = False

    async def send_command(self, command: records.Command | records.ModerationCommand) -> None:
        """A command on chat.commands, keyed by its conversation."""
        await self._send(self.commands_topic, command["conversation_id"], command)

    async def send_user_event(self, user: str, event: records.EdgeUserEvent) -> None:
        """An event about ``user`` on chat.users."""
        await self._send(self.users_topic, user, event)

    async def send_media_event(self, media_id: str, event: Mapping[str, Any]) -> None:
        """A command for the media agent on chat.media-commands, keyed by the media."""
        await self._send(self.media_topic, media_id, event)
