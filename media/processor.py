"""Media processor: ``chat.media`` → the object store → verdicts on ``chat.media-commands``.

The one step of the media pipeline that does I/O (docs/media.md). For each media the agent
has put in ``verifying`` it reads the uploaded object, judges the bytes (``media/verify.py``,
in a thread: decoding is CPU work), writes the stripped object and the thumbnail, and sends
``media.verified`` or ``media.rejected``; for each media that ended (rejected, expired,
deleted) it deletes the objects. The agent applies the verdicts, so a table rebuild never
repeats this work, and a verdict sent twice (a crash before the commit) changes nothing.

    chat.media ──▶ media processor ──▶ object store (objects/, thumbs/; uploads/ deleted)
                                   └─▶ chat.media-commands (media.verified / media.rejected)
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from botocore.exceptions import BotoCoreError, ClientError
from prometheus_client import Counter, Histogram

from chat import records
from chat.kafka_security import aiokafka_kwargs
from chat.records import MediaRejected, MediaVerified
from chat.settings import Settings
from chat.topics import topic_spec
from media import store as keys
from media import verify
from media.store import ObjectMissing, ObjectStore

log = logging.getLogger("chat.media")

verdicts = Counter("chat_media_verdicts_total", "Uploads judged", ["verdict"])
verify_seconds = Histogram(
    "chat_media_verify_seconds",
    "From reading an upload to writing its objects",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
deleted = Counter("chat_media_deleted_total", "Media whose objects were deleted", ["status"])
store_errors = Counter("chat_media_store_errors_total", "Object store calls that failed")
FINAL = ("rejected", "expired", "deleted")
RETRY_MAX_S = 5.0
STORE_ERRORS = (BotoCoreError, ClientError, OSError, asyncio.TimeoutError)


class MediaProcessor:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = ObjectStore(settings)
        self.commands = topic_spec(settings, "media-commands")
        self.consumer = AIOKafkaConsumer(
            settings.topic("media"),
            **aiokafka_kwargs(settings),
            group_id=settings.media_processor_group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_interval_ms=600_000,
        )
        self.producer = AIOKafkaProducer(**aiokafka_kwargs(settings), acks="all", linger_ms=0)
        self.slots = asyncio.Semaphore(settings.media_processor_concurrency)
        verify.configure(settings.media_max_pixels)

    async def start(self) -> None:
        await self.store.start()
        await self.store.ensure_bucket()
        await self.producer.start()
        await self.consumer.start()

    async def stop(self) -> None:
        await asyncio.gather(self.consumer.stop(), self.producer.stop(), return_exceptions=True)
        await self.store.close()

    async def run(self) -> None:
        """Batches of ``chat.media`` records: the latest state of each media in the batch is
        handled (concurrently, bounded by the slots); offsets are committed only after all of
        them were, so a crash repeats work and never skips it."""
        while True:
            batches = await self.consumer.getmany(timeout_ms=1000, max_records=100)
            latest: dict[str, dict[str, Any]] = {}
            for batch in batches.values():
                for record in batch:
                    try:
                        state = records.loads(record.value)
                        latest[state["id"]] = state
                    except (ValueError, KeyError, TypeError):
                        log.exception("undecodable media record skipped")
            if latest:
                await asyncio.gather(*(self.handle_until_done(s) for s in latest.values()))
            if batches:
                await self.consumer.commit()

    async def handle_until_done(self, state: dict[str, Any]) -> None:
        delay = 0.2
        while True:
            try:
                await self.handle(state)
                return
            except STORE_ERRORS as exc:
                store_errors.inc()
                log.warning("object store error, retrying: %s", exc, extra={"media": state["id"]})
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)

    async def handle(self, state: dict[str, Any]) -> None:
        if state["status"] == "verifying":
            async with self.slots:
                verdict = await self.verify(state)
            await self.send(state["id"], verdict)
        elif state["status"] in FINAL:
            await self.store.delete(keys.all_keys(state["id"]))
            deleted.labels(state["status"]).inc()

    async def verify(self, state: dict[str, Any]) -> MediaVerified | MediaRejected:
        media_id, started = state["id"], time.monotonic()
        s = self.settings
        upload = keys.upload_key(media_id)
        try:
            size = await self.store.size_of(upload)
        except ObjectMissing:
            return self.rejected(media_id, "nothing was uploaded")
        # The presigned policy already held the upload to its declared size; a store that
        # does not enforce policies is caught here, before anything is read.
        if size > min(int(state["size"]), s.media_max_bytes):
            return self.rejected(media_id, "larger than declared")
        data = await self.store.read(upload, size)
        try:
            result = await asyncio.to_thread(
                verify.inspect,
                data,
                state["type"],
                s.media_allowed_types,
                s.media_max_pixels,
                s.media_thumbnail_px,
            )
        except Exception:
            # A decoder bug on hostile bytes must not stop the pipeline: the file is refused.
            log.exception("verification failed", extra={"media": media_id})
            result = verify.Rejected("the file could not be verified")
        if isinstance(result, verify.Rejected):
            return self.rejected(media_id, result.reason)
        await self.store.write(keys.object_key(media_id), result.data, result.type)
        if result.thumbnail is not None:
            await self.store.write(keys.thumbnail_key(media_id), result.thumbnail, "image/jpeg")
        await self.store.delete([upload])
        verify_seconds.observe(time.monotonic() - started)
        verdicts.labels("ready").inc()
        return MediaVerified(
            op="media.verified",
            media_id=media_id,
            type=result.type,
            size=result.size,
            width=result.width,
            height=result.height,
            thumbnail=result.thumbnail is not None,
            placeholder=result.placeholder,
        )

    def rejected(self, media_id: str, reason: str) -> MediaRejected:
        verdicts.labels("rejected").inc()
        log.info("upload rejected: %s", reason, extra={"media": media_id})
        return MediaRejected(op="media.rejected", media_id=media_id, reason=reason)

    async def send(self, media_id: str, verdict: MediaVerified | MediaRejected) -> None:
        await self.producer.send_and_wait(
            self.commands.name,
            records.bundle([records.keyed_event(media_id, verdict)]),
            partition=records.partition_for(media_id, self.commands.partitions),
        )
