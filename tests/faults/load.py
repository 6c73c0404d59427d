"""Steady background load for the fault tests, and the exactly-once-per-seq check.

Pairs of users chat across the two edges: each sender sends at a fixed rate and, like a real
client, re-sends a message with the same ``client_msg_id`` when no ack came back in time (or
after a reconnect). Recipients reconnect to the other edge and ``sync`` from their cursors
when their edge dies. At the end every acknowledged ``(conversation, seq)`` must have reached
its recipient exactly once, in order, and be in the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

from tests.client import ChatClient
from tests.conftest import App
from tests.integration.helpers import create_direct, eventually, stored_messages, synced

ACK_TIMEOUT_S = 8.0


@dataclass
class Pair:
    sender: ChatClient
    recipient: ChatClient
    conversation_id: str
    acked: dict[str, int] = field(default_factory=dict)  # client_msg_id -> seq
    sent: int = 0
    unavailable: int = 0
    retries: int = 0
    recipient_edge: int = 1
    received: list[int] = field(default_factory=list)  # seqs, in arrival order, all sessions
    seen_frames: int = 0  # frames of the current recipient session already counted
    duplicates: int = 0


class BackgroundLoad:
    def __init__(self, app: App, pairs: int, rate_per_pair: float, tag: str) -> None:
        self.app = app
        self.n = pairs
        self.interval = 1.0 / rate_per_pair
        self.tag = tag
        self.pairs: list[Pair] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._stop = asyncio.Event()
        self._acked = asyncio.Condition()
        self.started_at = 0.0

    async def start(self) -> None:
        for i in range(self.n):
            sender = await self.app.client(f"s{i}-{self.tag}", edge=0)
            recipient = await self.app.client(f"r{i}-{self.tag}", edge=1)
            await synced(recipient)
            cid = (await create_direct(sender, recipient.user))["id"]
            self.pairs.append(Pair(sender, recipient, cid))
        self.started_at = time.monotonic()
        self._tasks = [asyncio.create_task(self._send_loop(p)) for p in self.pairs]

    async def _send_loop(self, pair: Pair) -> None:
        while not self._stop.is_set():
            pair.sent += 1
            cmid = f"m{pair.sent}"
            await self._send_until_acked(pair, cmid)
            await asyncio.sleep(self.interval)

    async def _send_until_acked(self, pair: Pair, cmid: str) -> None:
        """Never give up on a message: retry with the same client_msg_id until acked."""
        while True:
            try:
                reply = await pair.sender.request(
                    {
                        "type": "message.send",
                        "conversation_id": pair.conversation_id,
                        "client_msg_id": cmid,
                        "body": f"{self.tag} {cmid}",
                    },
                    timeout=ACK_TIMEOUT_S,
                )
            except TimeoutError:
                pair.retries += 1
                continue
            if reply["type"] == "message.ack":
                pair.acked[cmid] = reply["seq"]
                async with self._acked:
                    self._acked.notify_all()
                return
            assert reply["code"] in ("unavailable", "rate_limited", "internal"), reply
            pair.unavailable += 1
            await asyncio.sleep(0.5)

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    def acked_count(self) -> int:
        return sum(len(p.acked) for p in self.pairs)

    async def wait_for_acks(self, count: int, timeout: float) -> float:
        """Wait until ``count`` messages in all were acked; returns the seconds it took."""
        t0 = time.monotonic()
        async with self._acked:
            await asyncio.wait_for(
                self._acked.wait_for(lambda: self.acked_count() >= count), timeout
            )
        return time.monotonic() - t0

    async def move_recipients(self, clients: list[ChatClient], to_edge: int) -> None:
        """Recipients whose edge died reconnect to the other one and sync from their cursors."""
        for pair in self.pairs:
            self._collect(pair)
            cursor = max(pair.received, default=0)
            pair.recipient = await self.app.client(pair.recipient.user, edge=to_edge)
            pair.recipient_edge = to_edge
            pair.seen_frames = 0
            clients.append(pair.recipient)
            await synced(pair.recipient, {pair.conversation_id: cursor})

    def _collect(self, pair: Pair) -> None:
        frames = pair.recipient.frames
        for frame in frames[pair.seen_frames :]:
            if frame.get("type") == "message" and frame["conversation_id"] == pair.conversation_id:
                pair.received.append(frame["seq"])
        pair.seen_frames = len(frames)

    async def verify(self) -> dict[str, Any]:
        """Every acked seq arrived exactly once per recipient session chain, in order, and is
        stored; returns figures for the report."""
        for pair in self.pairs:
            expected = sorted(pair.acked.values())

            async def missing(pair: Pair = pair, expected: list[int] = expected) -> str:
                self._collect(pair)
                gone = sorted(set(expected) - set(pair.received))
                return f"{pair.recipient.user} on edge {pair.recipient_edge} misses {gone}"

            async def arrived(pair: Pair = pair, expected: list[int] = expected) -> bool:
                self._collect(pair)
                return set(expected) <= set(pair.received)

            try:
                await eventually(arrived, timeout=90)
            except AssertionError:
                raise AssertionError(await missing()) from None
            self._collect(pair)
            # At least once: a replay after a crash may deliver a seq again; clients drop
            # duplicates by (conversation_id, seq). What must hold is the deduplicated stream.
            deduped = list(dict.fromkeys(pair.received))
            pair.duplicates = len(pair.received) - len(deduped)
            assert deduped == sorted(deduped), f"out of order for {pair.recipient.user}: {deduped}"
            assert deduped[: len(expected)] == expected == list(range(1, len(expected) + 1)), (
                f"gap or loss for {pair.recipient.user}: acked {expected}, got {deduped}"
            )

            async def stored(pair: Pair = pair, n: int = len(expected)) -> list[Any] | None:
                docs = await stored_messages(
                    self.app.settings.mongo_url, self.app.settings.mongo_db, pair.conversation_id
                )
                return docs if len(docs) >= n else None

            docs = await eventually(stored, timeout=90)
            assert [d["seq"] for d in docs][: len(expected)] == expected
        return {
            "acked": self.acked_count(),
            "unavailable_replies": sum(p.unavailable for p in self.pairs),
            "retries": sum(p.retries for p in self.pairs),
            "redelivered_duplicates": sum(p.duplicates for p in self.pairs),
            "seconds": round(time.monotonic() - self.started_at, 1),
        }


@contextlib.asynccontextmanager
async def background_load(app: App, tag: str, pairs: int = 4, rate: float = 5.0):  # type: ignore[no-untyped-def]
    load = BackgroundLoad(app, pairs, rate, tag)
    await load.start()
    try:
        yield load
    finally:
        if not load._stop.is_set():
            await load.stop()
