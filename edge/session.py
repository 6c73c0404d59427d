"""One live WebSocket session (the registry of them is the hub, ``edge/hub.py``).

Each session has one outbound queue drained by at most one writer task (started when something
is queued, ended when the queue is empty), so frames for a session leave in the order they were
handed over: a ``sync`` answer (which may read the store first) is a queue item too, and live
messages that arrive meanwhile wait behind it.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import WSCloseCode, web

from chat import protocol
from edge import metrics

log = logging.getLogger("chat.edge.session")
MAX_QUEUED_FRAMES = 10_000
# Characters of frames queued for one session (a character of the JSON text is a byte unless
# the text holds non-ASCII): frames are up to ~24 KB, so the frame count alone would allow
# ~240 MB. CHAT_MAX_QUEUED_BYTES sets it per edge.
MAX_QUEUED_BYTES = 4 * 1024 * 1024

# A frame to write, a ``message`` frame with its (conversation_id, seq), or a job to run.
QueueItem = str | tuple[str, str, int] | Callable[[], Awaitable[None]]
# How far below the highest seq written a session remembers which seqs it has written.
DEDUP_WINDOW = 64
_WINDOW_MASK = (1 << DEDUP_WINDOW) - 1


class WrittenSeqs:
    """Which message seqs a session has been written, per conversation: the highest one and a
    bitmap of the ``DEDUP_WINDOW`` below it."""

    __slots__ = ("_by_conversation",)

    def __init__(self) -> None:
        self._by_conversation: dict[str, tuple[int, int]] = {}

    def first_time(self, conversation_id: str, seq: int) -> bool:
        """Record ``seq`` as written; False if it already was.

        A seq further below the highest one than the window counts as new: a sync may page
        through old messages after live ones arrived, and a duplicate is better than a loss.
        """
        highest, mask = self._by_conversation.get(conversation_id, (0, 0))
        if seq > highest:
            mask = ((mask << (seq - highest)) | 1) & _WINDOW_MASK
            self._by_conversation[conversation_id] = (seq, mask)
            return True
        below = highest - seq
        if below >= DEDUP_WINDOW:
            return True
        if mask & (1 << below):
            return False
        self._by_conversation[conversation_id] = (highest, mask | (1 << below))
        return True


class Session:
    # An edge holds tens of thousands of mostly idle sessions: no per-instance dict, and the
    # writer task exists only while there is something to write.
    __slots__ = (
        "_closer",
        "_queue",
        "_queued_bytes",
        "_socket_gone",
        "_writer",
        "_written",
        "account_created_ms",
        "closing",
        "expires_at",
        "id",
        "invalid_frames",
        "max_queued_bytes",
        "pending_sends",
        "user",
        "watching",
        "ws",
    )

    def __init__(
        self,
        session_id: str,
        user: str,
        ws: web.WebSocketResponse,
        expires_at: float,
        max_queued_bytes: int = MAX_QUEUED_BYTES,
        account_created_ms: int | None = None,
    ) -> None:
        self.id = session_id
        self.user = user
        self.account_created_ms = account_created_ms  # the token's claim, for the moderation rules
        self.ws = ws
        self.expires_at = expires_at  # the token's exp (epoch seconds): closed with 4003 then
        # Users whose presence this session subscribed to, and whether each is visible to it
        # (shares a conversation: edge/presence.py); most sessions never subscribe.
        self.watching: dict[str, bool] | None = None
        self.invalid_frames = 0
        self.closing = False
        # client_msg_id -> monotonic time the send arrived, for the ack latency histogram.
        self.pending_sends: dict[str, float] = {}
        self._closer: asyncio.Future[None] | None = None
        self._written: WrittenSeqs | None = None  # made on the first message: idle is cheap
        # Both exist only while frames wait to be written: an empty deque alone is ~700 bytes.
        self._queue: deque[QueueItem] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._queued_bytes = 0
        self.max_queued_bytes = max_queued_bytes
        self._socket_gone = False

    def send(self, frame: dict[str, Any]) -> None:
        self._enqueue(protocol.encode(frame))
        metrics.frames_out.labels(frame.get("type", "?")).inc()

    def send_encoded(self, text: str, frame_type: str) -> None:
        self._enqueue(text)
        metrics.frames_out.labels(frame_type).inc()

    def send_message_encoded(self, text: str, conversation_id: str, seq: int) -> None:
        """A ``message`` frame; written unless this session already has that seq (the stream
        agents are at-least-once: a batch redone after a crash or a rebalance repeats its
        deliveries)."""
        self._enqueue((text, conversation_id, seq))
        metrics.frames_out.labels("message").inc()

    def run_in_order(self, job: Callable[[], Awaitable[None]]) -> None:
        """Run ``job`` after everything queued so far; what it sends with :meth:`write_now`
        leaves before anything queued after it."""
        self._enqueue(job)

    async def write_now(self, frame: dict[str, Any]) -> None:
        """Write a frame at once: only for jobs run in order by the writer itself (``send``
        from there would queue the frame behind frames that arrived while the job ran).

        A ``message`` written here is always written (a client that syncs from a cursor gets
        every seq above it, even one this session had), and remembered, so that a live repeat
        of it is dropped."""
        if frame["type"] == "message":
            self._remember(frame["conversation_id"], frame["seq"])
        await self.ws.send_str(protocol.encode(frame))
        metrics.frames_out.labels(frame.get("type", "?")).inc()

    def _remember(self, conversation_id: str, seq: int) -> bool:
        """Record a message seq as written to this session; False if it already was."""
        if self._written is None:
            self._written = WrittenSeqs()
        return self._written.first_time(conversation_id, seq)

    def _enqueue(self, item: QueueItem) -> None:
        size = _size(item)
        if self._queue is not None and (
            len(self._queue) >= MAX_QUEUED_FRAMES
            or self._queued_bytes + size > self.max_queued_bytes
        ):
            # A client that does not read its socket must not make the edge buffer without end.
            if not self.closing:
                log.warning("slow consumer, closing", extra={"session": self.id, "user": self.user})
                self.closing = True
                self._closer = asyncio.ensure_future(
                    self.close(WSCloseCode.TRY_AGAIN_LATER, "too slow")
                )
            return
        if self._socket_gone:
            return  # the reader side is cleaning up; nothing can be written any more
        self._push(item)

    def _push(self, item: QueueItem) -> None:
        if self._queue is None:
            self._queue = deque()
        self._queue.append(item)
        self._queued_bytes += _size(item)
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_loop())

    async def _write_loop(self) -> None:
        """Write the queue in order until it is empty, then end (the next item starts a new
        writer). Items queued while a write is awaited are taken by this same loop."""
        try:
            await self._write_queued()
        finally:
            # Idle again (or stopped): the next item makes a new queue and a new writer.
            self._queue = None
            self._queued_bytes = 0
            self._writer = None

    async def _write_queued(self) -> None:
        while self._queue:
            item = self._queue.popleft()
            self._queued_bytes -= _size(item)
            try:
                if isinstance(item, str):
                    await self.ws.send_str(item)
                elif isinstance(item, tuple):
                    text, conversation_id, seq = item
                    if self._remember(conversation_id, seq):
                        await self.ws.send_str(text)
                    else:
                        metrics.duplicates_dropped.inc()
                else:
                    await item()
            except (ConnectionError, RuntimeError):
                self._socket_gone = True  # socket closed; the reader side cleans up
                return
            except Exception:
                log.exception("writer failed", extra={"session": self.id})

    def close_after_pending(self, code: int, message: str) -> None:
        """Close once the frames queued so far (e.g. the error replies) have been written."""
        self.closing = True

        async def job() -> None:
            await self.close(code, message)

        self._push(job)

    async def close(self, code: int, message: str) -> None:
        if not self.ws.closed:
            await self.ws.close(code=code, message=message.encode())

    async def stop(self) -> None:
        self._socket_gone = True
        self._queue = None
        self._queued_bytes = 0
        if self._writer is not None:
            self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)


def _size(item: QueueItem) -> int:
    """What a queue item counts against the byte bound: its text (a job counts nothing: it
    writes what it fetches at once, without queueing it)."""
    if isinstance(item, str):
        return len(item)
    if isinstance(item, tuple):
        return len(item[0])
    return 0
