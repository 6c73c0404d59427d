"""MongoDB sink: ``chat.messages``, ``chat.conversations``, ``chat.receipts``,
``chat.moderation`` → MongoDB.

    chat.messages ──────┐
    chat.conversations ─┼─▶ mongo sink ──▶ messages / conversations / receipts collections
    chat.receipts ──────┤
    chat.moderation ────┘              └─▶ moderation (audit) / moderation_queue / redactions

Writes on natural keys (``_id`` = ``<conversation_id>:<seq>``, the conversation id,
``<conversation_id>|<user>``): a message is inserted once (a replayed one is refused as a
duplicate key), the rest are upserts with ``$max``, so replaying any part of a topic is
harmless. Offsets are
committed only after a batch is written: when MongoDB is down the sink retries the same batch
and never commits past an unsaved record.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord
from prometheus_client import Counter, Histogram
from pymongo import ASCENDING, AsyncMongoClient, InsertOne, UpdateOne
from pymongo.errors import BulkWriteError, PyMongoError

from chat import records
from chat.kafka_security import aiokafka_kwargs
from chat.settings import Settings

log = logging.getLogger("chat.sink")

written = Counter("chat_sink_documents_total", "Documents written", ["collection"])
retries = Counter("chat_sink_retries_total", "Batches retried after a MongoDB error")
batch_size = Histogram(
    "chat_sink_batch_size",
    "Records per written batch",
    buckets=(1, 5, 10, 50, 100, 250, 500, 1000, 2000),
)
RETRY_MAX_S = 5.0
DUPLICATE_KEY = 11000


class BatchOps:
    """The MongoDB writes of one batch of records, folded per document: a batch holding many
    messages of one conversation raises its ``last_seq`` once, and a user's receipt cursors
    that moved several times are written once, with their highest values. Under load this
    keeps the store's work per message small (the writes are upserts with ``$max``, so
    folding them changes nothing but their number)."""

    def __init__(self) -> None:
        self.messages: list[InsertOne[dict[str, Any]]] = []
        self.last_seqs: dict[str, int] = {}
        self.conversations: dict[str, dict[str, Any]] = {}
        self.receipts: dict[str, dict[str, Any]] = {}
        self.media: dict[str, dict[str, Any]] = {}
        self.audit: list[InsertOne[dict[str, Any]]] = []
        self.queue: list[UpdateOne] = []
        self.redactions: list[UpdateOne] = []
        self.moderated_at: dict[str, int] = {}

    def add_moderation(self, record: dict[str, Any]) -> None:
        """An applied moderation decision: the audit trail (inserted once by its id), the
        moderators' queue entry of its message, and whether that message is hidden. The
        conversation's ``moderated_at`` moves too: the edge's history cache is keyed by it."""
        self.audit.append(InsertOne({"_id": record["id"], **record}))
        cid, seq, kind = record.get("conversation_id"), record.get("seq"), record["kind"]
        if cid is None or seq is None:
            return
        key = f"{cid}:{seq}"
        entry = {k: record[k] for k in ("id", "kind", "reason", "source", "by", "evidence", "at")}
        if kind in records.QUEUE_OPENS or kind in records.QUEUE_CLOSES:
            by_moderator = record["source"] == "moderator"
            if kind in records.QUEUE_CLOSES or by_moderator:
                status = "resolved"
            else:
                status = records.QUEUE_OPENS[kind]
            update: dict[str, Any] = {
                "$setOnInsert": {"conversation_id": cid, "seq": seq, "first_at": record["at"]},
                "$set": {"status": status},
                "$max": {"last_at": record["at"]},
                "$addToSet": {"entries": entry},
            }
            if record.get("user"):
                update["$set"]["sender"] = record["user"]
            self.queue.append(UpdateOne({"_id": key}, update, upsert=True))
        if kind in ("redacted", "restored"):
            hidden = kind == "redacted"
            self.redactions.append(
                UpdateOne(
                    {"_id": key},
                    {
                        "$set": {
                            "conversation_id": cid,
                            "seq": seq,
                            "hidden": hidden,
                            "reason": record["reason"],
                            "at": record["at"],
                        }
                    },
                    upsert=True,
                )
            )
            self.moderated_at[cid] = max(record["at"], self.moderated_at.get(cid, 0))

    def add_message(self, message: dict[str, Any]) -> None:
        cid, seq = message["conversation_id"], message["seq"]
        # A message never changes once it has its seq: inserted, and a replayed one is
        # refused as a duplicate key (an insert costs the store less than an upsert).
        self.messages.append(InsertOne({"_id": f"{cid}:{seq}", **message}))
        self.last_seqs[cid] = max(seq, self.last_seqs.get(cid, 0))

    def add_conversation(self, conversation: dict[str, Any]) -> None:
        fields = ("kind", "title", "members", "admins", "created_at")
        state = {k: conversation[k] for k in fields if k in conversation}
        self.conversations[conversation["id"]] = state  # the latest state wins

    def add_receipt(self, receipt: dict[str, Any]) -> None:
        cid, user = receipt["conversation_id"], receipt["user"]
        key = f"{cid}|{user}"
        seen = self.receipts.get(key)
        if seen is None:
            self.receipts[key] = {
                "conversation_id": cid,
                "user": user,
                "read": receipt["read"],
                "delivered": receipt["delivered"],
            }
        else:
            seen["read"] = max(seen["read"], receipt["read"])
            seen["delivered"] = max(seen["delivered"], receipt["delivered"])

    def add_media(self, state: dict[str, Any]) -> None:
        # chat.media holds each media's latest state, in order per media: the last one wins.
        self.media[state["id"]] = {k: v for k, v in state.items() if k != "id"}

    def by_collection(self) -> list[tuple[str, list[Any]]]:
        """The writes, in the order they must land: messages before the conversations'
        ``last_seq`` (the edge's history cache is keyed by it, so it must never run ahead)."""
        receipts = [
            UpdateOne(
                {"_id": key},
                {
                    "$set": {"conversation_id": r["conversation_id"], "user": r["user"]},
                    "$max": {"read": r["read"], "delivered": r["delivered"]},
                },
                upsert=True,
            )
            for key, r in self.receipts.items()
        ]
        conversations = [
            UpdateOne({"_id": cid}, {"$set": state}, upsert=True)
            for cid, state in self.conversations.items()
        ] + [
            UpdateOne({"_id": cid}, {"$max": {"last_seq": seq}}, upsert=True)
            for cid, seq in self.last_seqs.items()
        ]
        # After the redactions they announce (the history cache is keyed by it).
        conversations += [
            UpdateOne({"_id": cid}, {"$max": {"moderated_at": at}}, upsert=True)
            for cid, at in self.moderated_at.items()
        ]
        return [
            (name, ops)
            for name, ops in (
                ("messages", self.messages),
                ("moderation", self.audit),
                ("moderation_queue", self.queue),
                ("redactions", self.redactions),
                ("receipts", receipts),
                (
                    "media",
                    [
                        UpdateOne({"_id": mid}, {"$set": state}, upsert=True)
                        for mid, state in self.media.items()
                    ],
                ),
                ("conversations", conversations),
            )
            if ops
        ]


async def insert_new(collection: Any, inserts: list[InsertOne[dict[str, Any]]]) -> None:
    """Insert the documents that are not there yet (a replayed batch repeats some)."""
    try:
        await collection.bulk_write(inserts, ordered=False)
    except BulkWriteError as exc:
        others = [e for e in exc.details.get("writeErrors", []) if e.get("code") != DUPLICATE_KEY]
        if others or exc.details.get("writeConcernErrors"):
            raise


class MongoSink:
    def __init__(self, settings: Settings, db_name: str | None = None) -> None:
        self.settings = settings
        self.handlers = {
            settings.topic("messages"): BatchOps.add_message,
            settings.topic("conversations"): BatchOps.add_conversation,
            settings.topic("receipts"): BatchOps.add_receipt,
            settings.topic("media"): BatchOps.add_media,
            settings.topic("moderation"): BatchOps.add_moderation,
        }
        self.mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
            settings.mongo_url, serverSelectionTimeoutMS=3000, socketTimeoutMS=30_000
        )
        self.db = self.mongo[db_name or settings.mongo_db]
        self.consumer = AIOKafkaConsumer(
            *self.handlers,
            **aiokafka_kwargs(settings),
            group_id=settings.sink_group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            # The broker holds a fetch until 32 KiB or 50 ms have gathered: under load the
            # sink writes fewer, larger batches; the store (REST reads, old history in a
            # sync) trails live delivery by up to 50 ms more.
            fetch_min_bytes=32 * 1024,
            fetch_max_wait_ms=50,
            max_poll_records=settings.sink_batch,
        )
        self.healthy = False

    async def ensure_indexes(self) -> None:
        await self.db.messages.create_index(
            [("conversation_id", ASCENDING), ("seq", ASCENDING)], unique=True
        )
        await self.db.conversations.create_index([("members", ASCENDING)])
        await self.db.receipts.create_index([("conversation_id", ASCENDING)])
        await self.db.media.create_index([("owner", ASCENDING)])
        await self.db.redactions.create_index([("conversation_id", ASCENDING), ("seq", ASCENDING)])
        await self.db.moderation_queue.create_index([("status", ASCENDING), ("last_at", ASCENDING)])
        await self.db.moderation.create_index([("at", ASCENDING)])

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
        batch = BatchOps()
        for rec in recs:
            self.handlers[rec.topic](batch, records.loads(rec.value))
        writes = batch.by_collection()
        delay = 0.1
        while True:
            try:
                for collection, ops in writes:
                    if collection in ("messages", "moderation"):
                        await insert_new(self.db[collection], ops)
                    else:
                        await self.db[collection].bulk_write(ops, ordered=True)
                    written.labels(collection).inc(len(ops))
                batch_size.observe(len(recs))
                self.healthy = True
                return
            except PyMongoError as exc:
                self.healthy = False
                retries.inc()
                log.warning("MongoDB write failed, retrying the same batch: %s", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)
