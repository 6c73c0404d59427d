"""MongoDB sink: ``chat.messages``, ``chat.conversations``, ``chat.receipts`` → MongoDB.

    chat.messages ──┐
    chat.conversations ─┼─▶ mongo sink ──▶ messages / conversations / receipts collections
    chat.receipts ──┘

Upserts on natural keys (``_id`` = ``<conversation_id>:<seq>``, the conversation id,
``<conversation_id>|<user>``), so replaying any part of a topic is harmless. Offsets are
committed only after a batch is written: when MongoDB is down the sink retries the same batch
and never commits past an unsaved record.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord
from prometheus_client import Counter, Histogram
from pymongo import ASCENDING, AsyncMongoClient, UpdateOne
from pymongo.errors import PyMongoError

from chat import records
from chat.settings import Settings

log = logging.getLogger("chat.sink")

written = Counter("chat_sink_documents_total", "Documents upserted", ["collection"])
retries = Counter("chat_sink_retries_total", "Batches retried after a MongoDB error")
batch_size = Histogram(
    "chat_sink_batch_size",
    "Records per written batch",
    buckets=(1, 5, 10, 50, 100, 250, 500, 1000, 2000),
)
RETRY_MAX_S = 5.0


def message_ops(message: dict[str, Any]) -> list[tuple[str, UpdateOne]]:
    cid, seq = message["conversation_id"], message["seq"]
    return [
        ("messages", UpdateOne({"_id": f"{cid}:{seq}"}, {"$set": message}, upsert=True)),
        # last_seq rises only after the message itself is written (same ordered batch below):
        # the edge's history cache is keyed by it.
        ("conversations", UpdateOne({"_id": cid}, {"$max": {"last_seq": seq}}, upsert=True)),
    ]


def conversation_ops(conversation: dict[str, Any]) -> list[tuple[str, UpdateOne]]:
    fields = ("kind", "title", "members", "admins", "created_at")
    state: dict[str, Any] = {k: conversation[k] for k in fields if k in conversation}
    return [("conversations", UpdateOne({"_id": conversation["id"]}, {"$set": state}, upsert=True))]


def receipt_ops(receipt: dict[str, Any]) -> list[tuple[str, UpdateOne]]:
    cid, user = receipt["conversation_id"], receipt["user"]
    return [
        (
            "receipts",
            UpdateOne(
                {"_id": f"{cid}|{user}"},
                {
                    "$set": {"conversation_id": cid, "user": user},
                    "$max": {"read": receipt["read"], "delivered": receipt["delivered"]},
                },
                upsert=True,
            ),
        )
    ]


class MongoSink:
    def __init__(self, settings: Settings, db_name: str | None = None) -> None:
        self.settings = settings
        self.handlers = {
            settings.topic("messages"): message_ops,
            settings.topic("conversations"): conversation_ops,
            settings.topic("receipts"): receipt_ops,
        }
        self.mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
            settings.mongo_url, serverSelectionTimeoutMS=3000, socketTimeoutMS=30_000
        )
        self.db = self.mongo[db_name or settings.mongo_db]
        self.consumer = AIOKafkaConsumer(
            *self.handlers,
            bootstrap_servers=settings.kafka_bootstrap,
            group_id=settings.sink_group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=20,
            max_poll_records=settings.sink_batch,
        )
        self.healthy = False

    async def ensure_indexes(self) -> None:
        await self.db.messages.create_index(
            [("conversation_id", ASCENDING), ("seq", ASCENDING)], unique=True
        )
        await self.db.conversations.create_index([("members", ASCENDING)])
        await self.db.receipts.create_index([("conversation_id", ASCENDING)])

    async def run(self) -> None:
        await self.consumer.start()
        try:
            while True:
                batches = await self.consumer.getmany(
                    timeout_ms=1000, max_records=self.settings.sink_batch
                )
                recs = [r for batch in batches.values() for r in batch]
                if not recs:
                    continue
                await self.write_until_saved(recs)
                await self.consumer.commit()
        finally:
            await self.consumer.stop()

    async def write_until_saved(self, recs: list[ConsumerRecord[Any, Any]]) -> None:
        ops: dict[str, list[UpdateOne]] = {}
        for rec in recs:
            value = records.loads(rec.value)
            for collection, op in self.handlers[rec.topic](value):
                ops.setdefault(collection, []).append(op)
        delay = 0.1
        while True:
            try:
                # Messages before conversations: last_seq must never run ahead of the messages.
                for collection in ("messages", "receipts", "conversations"):
                    if ops.get(collection):
                        await self.db[collection].bulk_write(ops[collection], ordered=True)
                        written.labels(collection).inc(len(ops[collection]))
                batch_size.observe(len(recs))
                self.healthy = True
                return
            except PyMongoError as exc:
                self.healthy = False
                retries.inc()
                log.warning("MongoDB write failed, retrying the same batch: %s", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)
