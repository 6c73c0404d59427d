"""Sync assembly: the sessions agent's answer to a ``sync``, completed from the store.

The answer lists the messages the user's inbox row holds, and as ``fetch`` ranges the older
ones it no longer keeps; those are read from MongoDB before anything is written. The whole
answer is written as one job in the session's queue, so live messages that arrive while the
store is read wait behind it and the session sees every conversation in seq order.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from chat import protocol
from chat.records import SyncAnswer, message_frame
from edge import metrics
from edge.session import Session
from edge.store import Store

log = logging.getLogger("chat.edge.sync")
# How long a sync waits for the sink to write a range the inbox no longer holds.
SYNC_STORE_WAIT_S = 10.0


class SyncAssembler:
    def __init__(self, store: Store) -> None:
        self.store = store

    def answer(self, session: Session, sync: SyncAnswer) -> None:
        """Queue the answer behind what the session already has queued."""
        session.run_in_order(lambda: self._write_answer(session, sync))

    async def _write_answer(self, session: Session, sync: SyncAnswer) -> None:
        messages = list(sync["messages"])
        missing: set[str] = set()  # conversations whose older messages the store lacks
        for cid, first, last in sync["fetch"]:
            found = [] if missing else await self.fetch_from_store(cid, first, last)
            if len(found) < last - first + 1:
                missing.add(cid)
            else:
                messages.extend(found)
        complete = not missing
        # Never a gap: a conversation without its older messages is not sent at all, and the
        # client is told to sync again (its cursor for it has not moved).
        messages = [m for m in messages if m["conversation_id"] not in missing]
        messages.sort(key=lambda m: (m["conversation_id"], m["seq"]))
        for message in messages:
            await session.write_now(message_frame(message))
        if complete:
            reply: dict[str, Any] = {
                "type": "sync.done",
                "conversations": sync["conversations"],
                "truncated": sync["truncated"],
            }
            if sync.get("id") is not None:
                reply["id"] = sync["id"]
        else:
            reply = protocol.error_frame(
                protocol.UNAVAILABLE, "the message store is behind, sync again", sync.get("id")
            )
        await session.write_now(reply)

    async def fetch_from_store(self, cid: str, first: int, last: int) -> list[Any]:
        """Messages older than the inbox keeps. The sink may be behind the inbox (it catches up
        after an outage, or under load), so wait, bounded, until the store holds the range."""
        found: list[Any] = []
        deadline = asyncio.get_running_loop().time() + SYNC_STORE_WAIT_S
        delay = 0.05
        while True:
            try:
                found = await self.store.messages_range(cid, first, last)
            except Exception as exc:
                log.warning("store read failed during sync: %s", exc)
            if len(found) >= last - first + 1:
                return found
            if asyncio.get_running_loop().time() + delay > deadline:
                metrics.sync_store_behind.inc()
                return found
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)
