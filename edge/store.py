"""The edge's read side: MongoDB (written only by the sink) behind a small Redis page cache."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
import redis.asyncio as aioredis
from pymongo import ASCENDING, DESCENDING, AsyncMongoClient

from chat.keys import history_key
from chat.settings import Settings

log = logging.getLogger("chat.edge.store")
MESSAGE_FIELDS = {
    "_id": 0,
    "conversation_id": 1,
    "seq": 1,
    "sender": 1,
    "body": 1,
    "ts": 1,
    "client_msg_id": 1,
    "attachments": 1,  # absent from messages without any
}
DEFAULT_PAGE = 50
DEFAULT_CONVERSATIONS_PAGE = 100
HISTORY_CACHE_TTL_S = 300


def redacted(message: dict[str, Any], reason: str) -> dict[str, Any]:
    """The placeholder of a hidden message: no body and no attachments (docs/media.md)."""
    kept = {k: v for k, v in message.items() if k != "attachments"}
    return {**kept, "body": "", "redacted": {"reason": reason}}


class Store:
    def __init__(self, settings: Settings, redis_client: aioredis.Redis) -> None:
        self.client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
            settings.mongo_url,
            serverSelectionTimeoutMS=3000,
            connectTimeoutMS=3000,
            socketTimeoutMS=10_000,
        )
        self.db = self.client[settings.mongo_db]
        self.redis = redis_client

    async def close(self) -> None:
        await self.client.close()

    async def ping(self) -> bool:
        try:
            await asyncio.wait_for(self.db.command("ping"), 2.0)
            return True
        except Exception:
            return False

    async def conversation(self, conversation_id: str) -> dict[str, Any] | None:
        return await self.db.conversations.find_one({"_id": conversation_id})

    async def member_conversation(self, conversation_id: str, user: str) -> dict[str, Any] | None:
        doc = await self.conversation(conversation_id)
        if doc is None or user not in doc.get("members", []):
            return None
        return doc

    async def conversations_of(
        self, user: str, after: str | None = None, limit: int = DEFAULT_CONVERSATIONS_PAGE
    ) -> list[dict[str, Any]]:
        """One page of the user's conversations in id order, those after ``after``."""
        query: dict[str, Any] = {"members": user}
        if after is not None:
            query["_id"] = {"$gt": after}
        cursor = self.db.conversations.find(query).sort("_id", ASCENDING).limit(limit)
        docs = [d async for d in cursor]
        ids = [d["_id"] for d in docs]
        reads: dict[str, int] = {}
        if ids:
            async for r in self.db.receipts.find({"conversation_id": {"$in": ids}, "user": user}):
                reads[r["conversation_id"]] = int(r.get("read", 0))
        return [public_conversation(d) | {"read_seq": reads.get(d["_id"], 0)} for d in docs]

    async def receipts(self, conversation_id: str) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        async for r in self.db.receipts.find({"conversation_id": conversation_id}):
            out[r["user"]] = {
                "read": int(r.get("read", 0)),
                "delivered": int(r.get("delivered", 0)),
            }
        return out

    async def messages_range(
        self, conversation_id: str, first: int, last: int
    ) -> list[dict[str, Any]]:
        cursor = self.db.messages.find(
            {"conversation_id": conversation_id, "seq": {"$gte": first, "$lte": last}},
            MESSAGE_FIELDS,
        ).sort("seq", ASCENDING)
        return await self.with_redactions(conversation_id, [m async for m in cursor])

    async def with_redactions(
        self, conversation_id: str, messages: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """Messages that moderation hid become placeholders (same seq, no body, the reason):
        a reader sees seqs without gaps and nothing of what was hidden."""
        if not messages:
            return messages
        seqs = [m["seq"] for m in messages]
        hidden = {
            r["seq"]: r.get("reason", "")
            async for r in self.db.redactions.find(
                {
                    "conversation_id": conversation_id,
                    "seq": {"$gte": min(seqs), "$lte": max(seqs)},
                    "hidden": True,
                },
                {"seq": 1, "reason": 1},
            )
        }
        if not hidden:
            return messages
        return [redacted(m, hidden[m["seq"]]) if m["seq"] in hidden else m for m in messages]

    async def message(self, conversation_id: str, seq: int) -> dict[str, Any] | None:
        """One stored message as it was sent (moderators see what was hidden)."""
        return await self.db.messages.find_one(
            {"conversation_id": conversation_id, "seq": seq}, MESSAGE_FIELDS
        )

    async def history(
        self,
        conversation_id: str,
        last_seq: int,
        before: int | None,
        after: int | None,
        limit: int,
        moderated_at: int = 0,
    ) -> list[dict[str, Any]]:
        """Ascending by seq. ``after``: the first ``limit`` after it; otherwise the last ``limit``
        (below ``before`` when given).

        The latest default page is cached in Redis under the conversation's ``last_seq`` as the
        sink last recorded it (the sink writes messages before it raises ``last_seq``) and when
        moderation last hid or restored one of its messages (written after the redactions):
        a page cached for one pair never changes, so the cache needs no invalidation.
        """
        cache_key = f"{history_key(conversation_id)}:{last_seq}:{moderated_at}"
        cacheable = before is None and after is None and limit == DEFAULT_PAGE
        if cacheable:
            cached = await self._cached_page(cache_key)
            if cached is not None:
                return cached
        query: dict[str, Any] = {"conversation_id": conversation_id}
        seq_filter: dict[str, int] = {}
        if before is not None:
            seq_filter["$lt"] = before
        if after is not None:
            seq_filter["$gt"] = after
        if seq_filter:
            query["seq"] = seq_filter
        if after is not None:
            cursor = (
                self.db.messages.find(query, MESSAGE_FIELDS).sort("seq", ASCENDING).limit(limit)
            )
            page = [m async for m in cursor]
        else:
            cursor = (
                self.db.messages.find(query, MESSAGE_FIELDS).sort("seq", DESCENDING).limit(limit)
            )
            page = [m async for m in cursor]
            page.reverse()
        page = await self.with_redactions(conversation_id, page)
        if cacheable:
            await self._cache_page(cache_key, page)
        return page

    async def _cached_page(self, cache_key: str) -> list[dict[str, Any]] | None:
        try:
            raw = await self.redis.get(cache_key)
        except Exception as exc:
            log.warning("history cache read failed: %s", exc)
            return None
        return orjson.loads(raw) if raw else None

    async def _cache_page(self, cache_key: str, page: list[dict[str, Any]]) -> None:
        try:
            await self.redis.set(cache_key, orjson.dumps(page), ex=HISTORY_CACHE_TTL_S)
        except Exception as exc:
            log.warning("history cache write failed: %s", exc)


def public_conversation(doc: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": doc["_id"],
        "kind": doc.get("kind", "group"),
        "title": doc.get("title", ""),
        "members": doc.get("members", []),
        "admins": doc.get("admins", []),
        "last_seq": int(doc.get("last_seq", 0)),
    }
